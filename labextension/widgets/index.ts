/**
 * flowcell's notebook widgets (anywidget front end). One module serves every widget;
 * the model's `kind` picks the view. Bundled with its dependencies (dagre) by
 * `npm run build:widgets` into flowcell/widgets/static/, which ships in the wheel.
 */
import { artifactList } from './artifacts';
import { AnyModel, h, Listeners } from './dom';
import { GraphView } from '../src/graphview';
import { renderLive } from './live';
import { renderRuns } from './runs';
import { cardFrame } from './runview';

export { GraphView, layoutGraph } from '../src/graphview';

/** The event a click on a step sends up the page; JupyterLab's flowcell extension answers it by
 * scrolling to the step's cell and calling preventDefault(). Unanswered, the widget shows the
 * step's artifacts instead. */
export const STEP_EVENT = 'flowcell:step-click';

function renderArtifacts(model: AnyModel, el: HTMLElement): () => void {
  const listeners = new Listeners();
  const open = new Set<string>();
  const root = h('div', { class: 'fc-root fc-inspector' });
  el.appendChild(root);
  const render = () => {
    const task = model.get('task') as string;
    const arts = model.get('artifacts') as any[];
    const line = model.get('headline') || `${task}: ${arts.length} artifacts`;
    root.replaceChildren(
      h('div', { class: 'fc-headline' }, h('span', { class: 'fc-headline-icon' }, '◆'), line,
        h('span', { class: 'fc-muted fc-headline-task' }, task)),
      artifactList(model, task, arts, open, render));
  };
  listeners.on(model, ['artifacts', 'previews', 'headline'], render);
  render();
  return () => {
    listeners.dispose();
    root.remove();
  };
}

function renderGraph(model: AnyModel, el: HTMLElement): () => void {
  const listeners = new Listeners();
  const open = new Set<string>();
  const root = h('div', { class: 'fc-root fc-flow-graph' });
  el.appendChild(root);
  let view: GraphView | null = null;
  const render = () => {
    view?.dispose();
    const graph = model.get('graph');
    const detail = model.get('step_detail');
    view = new GraphView(graph, {
      selected: detail?.step,
      onStep: step => {
        const event = new CustomEvent(STEP_EVENT, { bubbles: true, cancelable: true, detail: { step } });
        if (root.dispatchEvent(event)) {
          model.send({ type: 'step', step });
        }
      }
    });
    const parts: HTMLElement[] = [h('div', { class: 'fc-toolbar' }, h('span', { class: 'fc-title' }, model.get('flow')),
      h('span', { class: 'fc-muted' }, 'click a step to go to its cell')), view.element];
    if (detail && detail.step) {
      parts.push(h('section', { class: 'fc-card' },
        h('h4', {}, detail.headline),
        detail.task ? artifactList(model, detail.task, detail.artifacts, open, render) : null));
    }
    root.replaceChildren(...parts);
  };
  listeners.on(model, ['graph', 'step_detail', 'previews'], render);
  render();
  return () => {
    listeners.dispose();
    view?.dispose();
    root.remove();
  };
}

function renderCard(model: AnyModel, el: HTMLElement): () => void {
  const listeners = new Listeners();
  const root = h('div', { class: 'fc-card-view' });
  el.appendChild(root);
  let disposers: (() => void)[] = [];
  const render = () => {
    disposers.forEach(d => d());
    disposers = [];
    const frame = cardFrame(model.get('html'), disposers);
    frame.title = model.get('title');
    root.replaceChildren(frame);
  };
  listeners.on(model, ['html'], render);
  render();
  return () => {
    listeners.dispose();
    disposers.forEach(d => d());
    root.remove();
  };
}

const VIEWS: Record<string, (model: AnyModel, el: HTMLElement) => () => void> = {
  runs: renderRuns,
  artifacts: renderArtifacts,
  graph: renderGraph,
  live: renderLive,
  card: renderCard
};

export default {
  render({ model, el }: { model: AnyModel; el: HTMLElement }): () => void {
    const view = VIEWS[model.get('kind') as string];
    if (!view) {
      el.textContent = `flowcell: unknown widget kind ${model.get('kind')}`;
      return () => undefined;
    }
    return view(model, el);
  }
};
