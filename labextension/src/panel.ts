/**
 * The "Flow" side panel: the DAG and the recent runs of the active notebook.
 *
 * The graph is the kernel's graph model (steps with their status, typed edges), laid out
 * by dagre and drawn by graphview.ts's GraphView — the same code the %flow_graph widget
 * uses — with the same zoom, pan and fit; a click on a step goes to its cell. It is built
 * as DOM nodes with text nodes for every name, so no markup from the kernel reaches the page.
 */
import { JupyterFrontEnd } from '@jupyterlab/application';
import { Widget } from '@lumino/widgets';

import { Bridge } from './bridge';
import { GraphView, ViewState } from './graphview';
import { VERSION } from './version';

export class FlowPanel extends Widget {
  private _bridge: Bridge | null = null;
  private _view: GraphView | null = null;
  private _viewOf: Bridge | null = null;

  constructor(
    private readonly _app: JupyterFrontEnd,
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
    if (state.graph && state.graph.nodes.length) {
      this._view = new GraphView(state.graph, { initial: kept, onStep: step => this._showStep(bridge, step) });
      this._viewOf = bridge;
      node.append(this._view.element);
    }
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
