/**
 * One notebook's connection to flowcell in its kernel.
 *
 * The front end opens its own comm (target "flowcell") whenever it meets a kernel —
 * page load, reopening a notebook, a second browser tab, a kernel change or restart —
 * and the kernel answers with the flow's state, read from its registry and the store.
 * A kernel without flowcell closes the comm at once: that is how "not loaded" is known.
 * When `%load_ext flowcell` runs later, the kernel announces itself with a one-shot comm
 * and every front end connects again.
 *
 * Every listener is a Lumino signal connection or a disposable owned by the bridge, so
 * closing the notebook leaves nothing behind.
 */
import { Cell } from '@jupyterlab/cells';
import { NotebookPanel } from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { PromiseDelegate } from '@lumino/coreutils';
import { IDisposable } from '@lumino/disposable';
import { Debouncer } from '@lumino/polling';
import { ISignal, Signal } from '@lumino/signaling';

import { badge, findStepCell, FlowState, parseStepLine, sameIds } from './cells';

export const TARGET = 'flowcell';

/** What the front end knows about flowcell in the kernel. */
export type Connection = 'asking' | 'absent' | 'loaded';

/** Work triggered by typing waits this long after the last keystroke. */
const DEBOUNCE_MS = 150;

export class Bridge implements IDisposable {
  state: FlowState | null = null;
  private _connection: Connection = 'asking';
  private _answered = new PromiseDelegate<Connection>();
  private _kernel: Kernel.IKernelConnection | null = null;
  private _comm: Kernel.IComm | null = null;
  private _sentIds: string[] | null = null;
  private _reconnectWhenIdle = false;
  private _changed = new Signal<Bridge, void>(this);
  private _disposedSignal = new Signal<Bridge, void>(this);
  private _decorate = new Debouncer(() => this.decorate(), DEBOUNCE_MS);
  private _syncCells = new Debouncer(() => this._sendCells(), DEBOUNCE_MS);
  private _badges = new Map<Cell, HTMLElement>();
  private _disposed = false;

  constructor(readonly panel: NotebookPanel) {
    const session = panel.sessionContext;
    session.kernelChanged.connect(this._onKernelChanged, this);
    session.statusChanged.connect(this._onStatus, this);
    panel.content.modelContentChanged.connect(this._onContent, this);
    panel.content.modelChanged.connect(this._watchCells, this);
    this._watchCells();
    panel.disposed.connect(this.dispose, this);
    void session.ready.then(() => this._attach(session.session?.kernel ?? null));
    void panel.context.ready.then(() => void this._decorate.invoke());
  }

  /** Emitted when the state or the connection changes. */
  get changed(): ISignal<Bridge, void> {
    return this._changed;
  }

  /** Emitted once, when the notebook closes. */
  get disposed(): ISignal<Bridge, void> {
    return this._disposedSignal;
  }

  get connection(): Connection {
    return this._connection;
  }

  get loaded(): boolean {
    return this._connection === 'loaded';
  }

  get isDisposed(): boolean {
    return this._disposed;
  }

  /** Resolves once the kernel has answered whether flowcell is loaded. */
  answered(): Promise<Connection> {
    return this._connection === 'asking' ? this._answered.promise : Promise.resolve(this._connection);
  }

  dispose(): void {
    if (this._disposed) {
      return;
    }
    this._disposed = true;
    this._detach();
    this._decorate.dispose();
    this._syncCells.dispose();
    this._badges.forEach(node => node.remove());
    this._badges.clear();
    this._disposedSignal.emit();
    Signal.clearData(this);
  }

  send(data: Record<string, string>): void {
    if (this._comm && !this._comm.isDisposed) {
      this._comm.send(data);
    }
  }

  async execute(code: string): Promise<void> {
    const kernel = this.panel.sessionContext.session?.kernel;
    if (!kernel) {
      throw new Error('This notebook has no kernel.');
    }
    await kernel.requestExecute({ code, store_history: false }).done;
  }

  stepCellIndex(step: string): number {
    return findStepCell(this.panel.content.widgets.map(c => c.model.sharedModel.getSource()), step);
  }

  /** Put a badge with name and status at the top of every %%step cell, above input and output. */
  decorate(): void {
    if (this._disposed) {
      return;
    }
    const seen = new Set<Cell>();
    for (const cell of this.panel.content.widgets) {
      seen.add(cell);
      const header = parseStepLine(cell.model.sharedModel.getSource());
      let node = this._badges.get(cell);
      if (!header) {
        node?.remove();
        this._badges.delete(cell);
        continue;
      }
      if (!node) {
        node = document.createElement('div');
        this._badges.set(cell, node);
      }
      const { text, cls, title } = badge(header.name, this.state?.steps[header.name], this.state?.stale);
      if (node.textContent !== text) {
        node.textContent = text;
      }
      if (node.title !== title) {
        node.title = title;
      }
      // Touch the DOM only where something changed: this runs after every pause in typing.
      if (node.className !== `fc-badge ${cls}`) {
        node.className = `fc-badge ${cls}`;
      }
      if (node.dataset.step !== header.name) {
        node.dataset.step = header.name;
      }
      this._place(cell, node);
    }
    for (const [cell, node] of this._badges) {
      if (!seen.has(cell)) {
        node.remove();
        this._badges.delete(cell);
      }
    }
  }

  /** Just before the input: cells render lazily, so wait for a cell that has not rendered yet. */
  private _place(cell: Cell, node: HTMLElement): void {
    const input = cell.node.querySelector(':scope > .jp-Cell-inputWrapper');
    if (input) {
      if (node.nextSibling !== input) {
        cell.node.insertBefore(node, input);
      }
    } else {
      void cell.ready.then(() => void this._decorate.invoke());
    }
  }

  private _onContent(): void {
    void this._decorate.invoke();
  }

  private _watchCells(): void {
    this.panel.content.model?.cells.changed.connect(this._onCellsChanged, this);
  }

  private _onCellsChanged(): void {
    void this._decorate.invoke();
    void this._syncCells.invoke();
  }

  /** Tell the kernel which cells the notebook holds now, so deleted cells leave the flow. */
  private _sendCells(): void {
    const model = this.panel.content.model;
    if (!this.loaded || !model) {
      return;
    }
    const ids = Array.from(model.cells, cell => cell.id);
    if (this._sentIds && sameIds(this._sentIds, ids)) {
      return;
    }
    this._sentIds = ids;
    this._comm?.send({ type: 'cells', ids });
  }

  private _onKernelChanged(): void {
    this._attach(this.panel.sessionContext.session?.kernel ?? null);
  }

  private _onStatus(_: unknown, status: Kernel.Status): void {
    if (status === 'restarting' || status === 'autorestarting') {
      // The new process has forgotten everything; ask again once it is idle, since
      // an IPython profile may load flowcell at start-up.
      this._comm = null;
      this.state = null;
      this._reconnectWhenIdle = true;
      this._setConnection('asking');
    } else if (status === 'dead') {
      this._comm = null;
      this.state = null;
      this._setConnection('absent');
    } else if (status === 'idle' && this._reconnectWhenIdle) {
      this._reconnectWhenIdle = false;
      this._connect();
    }
  }

  private _attach(kernel: Kernel.IKernelConnection | null): void {
    if (this._disposed || kernel === this._kernel) {
      return;
    }
    this._detach();
    this._kernel = kernel;
    if (!kernel) {
      this._setConnection('absent');
      return;
    }
    kernel.registerCommTarget(TARGET, this._onAnnounce);
    this._connect();
  }

  private _detach(): void {
    const kernel = this._kernel;
    if (kernel && !kernel.isDisposed) {
      kernel.removeCommTarget(TARGET, this._onAnnounce);
    }
    this._closeComm();
    this._kernel = null;
    this.state = null;
  }

  /** The kernel ran `%load_ext flowcell`: connect (its announcement comm is closed by the kernel). */
  private _onAnnounce = (): void => {
    this._connect();
  };

  /** Open our own comm and ask for the state. */
  private _connect(): void {
    const kernel = this._kernel;
    if (this._disposed || !kernel || kernel.isDisposed) {
      return;
    }
    this._closeComm();
    this._setConnection('asking');
    const comm = kernel.createComm(TARGET);
    this._comm = comm;
    this._sentIds = null;
    comm.onMsg = (msg: KernelMessage.ICommMsgMsg) => {
      if (this._comm === comm) {
        this._apply(msg.content.data as unknown as FlowState);
      }
    };
    comm.onClose = () => {
      if (this._comm === comm) {
        this._comm = null;
        this.state = null;
        this._setConnection('absent');
        void this._decorate.invoke();
      }
    };
    comm.open({ type: 'hello' });
  }

  private _closeComm(): void {
    const comm = this._comm;
    this._comm = null;
    if (comm && !comm.isDisposed) {
      try {
        comm.close();
      } catch {
        // the kernel connection went away first; nothing to tell it
      }
      comm.dispose();
    }
  }

  private _apply(state: FlowState): void {
    if (!state || state.type !== 'state') {
      return;
    }
    this.state = state;
    this._setConnection('loaded');
    this._sendCells();
    this.decorate();
    this._changed.emit();
  }

  private _setConnection(connection: Connection): void {
    if (connection === this._connection && connection !== 'asking') {
      return;
    }
    const was = this._connection;
    this._connection = connection;
    if (connection === 'asking') {
      if (was !== 'asking') {
        this._answered = new PromiseDelegate<Connection>();
      }
    } else {
      this._answered.resolve(connection);
    }
    this._changed.emit();
  }
}
