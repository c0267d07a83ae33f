/**
 * The "Flow" side panel: the DAG and the recent runs of the active notebook.
 *
 * The graph is SVG drawn by the kernel; it goes through JupyterLab's sanitizer with
 * an allow-list of plain SVG shapes before it reaches the page, then sits in the same
 * pan/zoom/fit viewport as the dagre graph (graphview.ts's Viewport).
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { IRenderMime } from '@jupyterlab/rendermime-interfaces';
import { Widget } from '@lumino/widgets';

import { Bridge } from './bridge';
import { Viewport, ViewState } from './graphview';
import { VERSION } from './version';

/** SVG elements and attributes the graph may use; anything else (scripts, handlers, links) is dropped. */
const SVG_TAGS = ['svg', 'g', 'defs', 'marker', 'path', 'line', 'polyline', 'polygon', 'rect', 'circle',
  'ellipse', 'text', 'tspan', 'title'];
const SVG_ATTRIBUTES = ['xmlns', 'width', 'height', 'viewbox', 'x', 'y', 'x1', 'y1', 'x2', 'y2', 'cx', 'cy',
  'r', 'rx', 'ry', 'd', 'points', 'transform', 'fill', 'fill-opacity', 'opacity', 'stroke', 'stroke-width',
  'stroke-dasharray', 'font-family', 'font-size', 'font-weight', 'text-anchor', 'dominant-baseline',
  'marker-end', 'markerwidth', 'markerheight', 'refx', 'refy', 'orient', 'class', 'data-step',
  'data-jupyter-id'];

/** Sanitize the kernel's graph SVG for insertion with innerHTML. */
export function sanitizeGraph(sanitizer: IRenderMime.ISanitizer, svg: string): string {
  return sanitizer.sanitize(svg, { allowedTags: SVG_TAGS, allowedAttributes: { '*': SVG_ATTRIBUTES } });
}

/**
 * Put the sanitized graph's drawing in a group the viewport can move and scale: the
 * viewBox (which would fight the transform) becomes the drawing's size at 1:1.
 */
export function zoomable(canvas: SVGSVGElement, initial: ViewState | null = null): Viewport {
  const box = canvas.viewBox?.baseVal;
  const width = box?.width || Number(canvas.getAttribute('width')) || 0;
  const height = box?.height || Number(canvas.getAttribute('height')) || 0;
  const group = document.createElementNS('http://www.w3.org/2000/svg', 'g');
  const drawing = document.createElementNS('http://www.w3.org/2000/svg', 'g');
  if (box && (box.x || box.y)) {
    drawing.setAttribute('transform', `translate(${-box.x},${-box.y})`);
  }
  drawing.append(...Array.from(canvas.childNodes));
  group.append(drawing);
  canvas.append(group);
  canvas.removeAttribute('viewBox');
  canvas.classList.add('fc-graph-canvas');
  return new Viewport(canvas, group, { width, height }, { handles: '.fc-step', initial });
}

export class FlowPanel extends Widget {
  private _bridge: Bridge | null = null;
  private _view: Viewport | null = null;
  private _viewOf: Bridge | null = null;

  constructor(
    private readonly _app: JupyterFrontEnd,
    private readonly _sanitizer: IRenderMime.ISanitizer,
    private readonly _loadCommand: string
  ) {
    super();
    this.id = 'flowcell-panel';
    this.title.label = 'Flow';
    this.title.caption = 'flowcell: the flow of the active notebook';
    this.addClass('fc-panel');
    this.render();
  }

  get bridge(): Bridge | null {
    return this._bridge;
  }

  /** Show the flow of another notebook (or none); listens to one bridge at a time. */
  follow(bridge: Bridge | null): void {
    if (bridge === this._bridge) {
      return;
    }
    this._bridge?.changed.disconnect(this.render, this);
    this._bridge = bridge;
    bridge?.changed.connect(this.render, this);
    bridge?.disposed.connect(this._onBridgeDisposed, this);
    this.render();
  }

  dispose(): void {
    this.follow(null);
    super.dispose();
  }

  private _onBridgeDisposed(bridge: Bridge): void {
    bridge.disposed.disconnect(this._onBridgeDisposed, this);
    if (bridge === this._bridge) {
      this.follow(null);
    }
  }

  render(): void {
    const node = this.node;
    const bridge = this._bridge;
    // A re-render (every kernel update) keeps the zoom the user chose for this notebook's graph.
    const kept = this._view && this._viewOf === bridge ? this._view.moved : null;
    this._view?.dispose();
    this._view = null;
    node.textContent = '';
    const para = (text: string, className = '') =>
      node.append(Object.assign(document.createElement('p'), { textContent: text, className }));
    if (!bridge) {
      para('Open a notebook to see its flow.');
    } else if (bridge.connection === 'asking') {
      para('Asking the kernel for its flow…', 'fc-asking');
    } else if (!bridge.loaded || !bridge.state) {
      para('flowcell is not loaded in this notebook\'s kernel.');
      const button = Object.assign(document.createElement('button'), {
        textContent: 'Load flowcell in this kernel',
        className: 'jp-mod-styled jp-mod-accept fc-load'
      });
      button.onclick = () => void this._app.commands.execute(this._loadCommand);
      node.append(button);
    } else {
      this._renderFlow(bridge, kept);
    }
    const kernelVersion = bridge?.state?.version;
    const footer = document.createElement('p');
    footer.className = 'fc-version';
    footer.textContent = `flowcell ${VERSION}`;
    if (kernelVersion && kernelVersion !== VERSION) {
      footer.textContent += ` — the kernel has flowcell ${kernelVersion}: reinstall so both match, then reload the page.`;
      footer.classList.add('fc-mismatch');
    }
    node.append(footer);
  }

  private _renderFlow(bridge: Bridge, kept: ViewState | null): void {
    const node = this.node;
    const state = bridge.state!;
    node.append(Object.assign(document.createElement('h3'), { textContent: state.flow }));
    const graph = document.createElement('div');
    graph.className = 'fc-graph';
    graph.innerHTML = sanitizeGraph(this._sanitizer, state.svg);
    // The sanitizer moves ids aside (DOM clobbering); the arrow heads need theirs back.
    graph.querySelectorAll<SVGMarkerElement>('marker[data-jupyter-id^="fc-"]').forEach(m => {
      m.id = m.dataset.jupyterId ?? '';
    });
    graph.querySelectorAll<SVGGElement>('g.fc-step').forEach(g => {
      g.addEventListener('click', () => this._showStep(bridge, g.dataset.step ?? ''));
    });
    const canvas = graph.querySelector('svg');
    if (canvas) {
      this._view = zoomable(canvas, kept);
      this._viewOf = bridge;
      graph.append(this._view.toolbar, this._view.element);
    }
    node.append(graph);
    node.append(Object.assign(document.createElement('h3'), { textContent: 'Recent runs' }));
    const list = document.createElement('ul');
    for (const run of state.runs) {
      const item = document.createElement('li');
      item.className = `fc-run fc-status-${run.status}`;
      item.textContent = `${run.pathspec} · ${run.status}${run.tags.length ? ' · ' + run.tags.join(', ') : ''}`;
      item.onclick = () => void this._app.commands.execute('flowcell:browse-runs');
      list.append(item);
    }
    if (!state.runs.length) {
      list.append(Object.assign(document.createElement('li'), { textContent: 'no runs yet' }));
    }
    node.append(list);
  }

  private _showStep(bridge: Bridge, step: string): void {
    const index = bridge.stepCellIndex(step);
    if (index >= 0) {
      const notebook = bridge.panel.content;
      notebook.activeCellIndex = index;
      void notebook.scrollToItem(index);
      this._app.shell.activateById(bridge.panel.id);
    }
  }
}
