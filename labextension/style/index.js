import './graph.css';
import './index.css';
