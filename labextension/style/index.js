import './theme.css';
import './graph.css';
import './index.css';
