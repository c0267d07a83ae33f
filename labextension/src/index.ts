/**
 * flowcell for JupyterLab: a badge on each %%step cell with the status of its last
 * spin or run, commands to spin / run / resume / export from the keyboard, and a
 * "Flow" side panel with the DAG and the recent runs of the active notebook.
 *
 * The notebook's kernel opens a comm (target "flowcell") when `%load_ext flowcell`
 * runs and sends the flow's state after every change; no extra server process.
 */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Dialog, ICommandPalette, showDialog } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import { badge, findStepCell, FlowState, parseStepLine } from './cells';

const TARGET = 'flowcell';

namespace CommandIDs {
  export const spin = 'flowcell:spin-step';
  export const run = 'flowcell:run-flow';
  export const resume = 'flowcell:resume-step';
  export const exportFlow = 'flowcell:export-flow';
  export const load = 'flowcell:load-extension';
}

/** One notebook's connection to flowcell in its kernel. */
class Bridge {
  comm: Kernel.IComm | null = null;
  state: FlowState | null = null;
  private listeners: (() => void)[] = [];

  constructor(readonly panel: NotebookPanel) {
    panel.sessionContext.kernelChanged.connect(() => this.attach());
    // A restarted kernel has forgotten flowcell: drop the state until it is loaded again.
    panel.sessionContext.statusChanged.connect((_, status) => {
      if (status === 'restarting' || status === 'autorestarting' || status === 'dead') {
        this.comm = null;
        this.state = null;
        this.decorate();
        this.changed();
      }
    });
    panel.sessionContext.ready.then(() => this.attach());
    panel.content.model?.cells.changed.connect(() => this.decorate());
    panel.content.modelContentChanged.connect(() => this.decorate());
  }

  onChange(listener: () => void): void {
    this.listeners.push(listener);
  }

  private attach(): void {
    const kernel = this.panel.sessionContext.session?.kernel;
    this.comm = null;
    this.state = null;
    this.changed();
    if (!kernel) {
      return;
    }
    kernel.registerCommTarget(TARGET, (comm, msg) => {
      this.comm = comm;
      this.apply(msg.content.data as unknown as FlowState);
      comm.onMsg = (m: KernelMessage.ICommMsgMsg) => this.apply(m.content.data as unknown as FlowState);
      comm.onClose = () => {
        this.comm = null;
        this.changed();
      };
    });
  }

  get loaded(): boolean {
    return this.comm !== null;
  }

  send(data: Record<string, string>): void {
    this.comm?.send(data);
  }

  async execute(code: string): Promise<void> {
    const kernel = this.panel.sessionContext.session?.kernel;
    if (!kernel) {
      throw new Error('This notebook has no kernel.');
    }
    await kernel.requestExecute({ code, store_history: false }).done;
  }

  private apply(state: FlowState): void {
    if (state && state.type === 'state') {
      this.state = state;
      this.decorate();
      this.changed();
    }
  }

  private changed(): void {
    this.listeners.forEach(l => l());
  }

  /** Put a badge with name and status on every %%step cell. */
  decorate(): void {
    for (const cell of this.panel.content.widgets) {
      const header = parseStepLine(cell.model.sharedModel.getSource());
      let node = cell.node.querySelector(':scope > .fc-badge') as HTMLElement | null;
      if (!header) {
        node?.remove();
        continue;
      }
      if (!node) {
        node = document.createElement('div');
      }
      // Above the input once the cell has rendered it; cells render lazily when scrolled to.
      const input = cell.node.querySelector(':scope > .jp-Cell-inputWrapper');
      if (input && node.nextSibling !== input) {
        cell.node.insertBefore(node, input);
      } else if (!input && !node.parentElement) {
        cell.node.appendChild(node);
      }
      const { text, cls } = badge(header.name, this.state?.steps[header.name]);
      node.className = `fc-badge ${cls}`;
      node.textContent = text;
      node.dataset.step = header.name;
    }
  }

  stepCellIndex(step: string): number {
    return findStepCell(this.panel.content.widgets.map(c => c.model.sharedModel.getSource()), step);
  }
}

/** The "Flow" side panel: DAG and recent runs of the active notebook. */
class FlowPanel extends Widget {
  private bridge: Bridge | null = null;

  constructor(private readonly app: JupyterFrontEnd) {
    super();
    this.id = 'flowcell-panel';
    this.title.label = 'Flow';
    this.title.caption = 'flowcell: the flow of the active notebook';
    this.addClass('fc-panel');
    this.render();
  }

  follow(bridge: Bridge | null): void {
    this.bridge = bridge;
    bridge?.onChange(() => {
      if (this.bridge === bridge) {
        this.render();
      }
    });
    this.render();
  }

  render(): void {
    const node = this.node;
    node.textContent = '';
    const bridge = this.bridge;
    if (!bridge) {
      node.append(Object.assign(document.createElement('p'), { textContent: 'Open a notebook to see its flow.' }));
      return;
    }
    if (!bridge.loaded || !bridge.state) {
      node.append(
        Object.assign(document.createElement('p'), { textContent: 'flowcell is not loaded in this notebook\'s kernel.' })
      );
      const button = Object.assign(document.createElement('button'), {
        textContent: 'Load flowcell in this kernel',
        className: 'jp-mod-styled jp-mod-accept fc-load'
      });
      button.onclick = () => void this.app.commands.execute(CommandIDs.load);
      node.append(button);
      return;
    }
    const state = bridge.state;
    node.append(Object.assign(document.createElement('h3'), { textContent: state.flow }));
    const graph = document.createElement('div');
    graph.className = 'fc-graph';
    graph.innerHTML = state.svg;
    graph.querySelectorAll<SVGGElement>('g.fc-step').forEach(g => {
      g.addEventListener('click', () => {
        const step = g.dataset.step ?? '';
        const index = bridge.stepCellIndex(step);
        if (index >= 0) {
          const notebook = bridge.panel.content;
          notebook.activeCellIndex = index;
          void notebook.scrollToItem(index);
          this.app.shell.activateById(bridge.panel.id);
        }
      });
    });
    node.append(graph);
    node.append(Object.assign(document.createElement('h3'), { textContent: 'Recent runs' }));
    const list = document.createElement('ul');
    for (const run of state.runs) {
      const item = document.createElement('li');
      item.className = `fc-run fc-status-${run.status}`;
      item.textContent = `${run.pathspec} · ${run.status}${run.tags.length ? ' · ' + run.tags.join(', ') : ''}`;
      item.onclick = () => void openRunBrowser(bridge, run.id);
      list.append(item);
    }
    if (!state.runs.length) {
      list.append(Object.assign(document.createElement('li'), { textContent: 'no runs yet' }));
    }
    node.append(list);
  }
}

/** Append a cell showing the run browser for one run, and run it. */
async function openRunBrowser(bridge: Bridge, runId: string): Promise<void> {
  const notebook = bridge.panel.content;
  notebook.activeCellIndex = notebook.widgets.length - 1;
  NotebookActions.insertBelow(notebook);
  notebook.activeCell?.model.sharedModel.setSource(`# run ${runId}\n%flow_runs`);
  await NotebookActions.run(notebook, bridge.panel.sessionContext);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'flowcell:plugin',
  description: 'Step badges, spin from the keyboard, and the flow beside the notebook.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette, ILabShell],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null,
    labShell: ILabShell | null
  ) => {
    const bridges = new WeakMap<NotebookPanel, Bridge>();
    const panel = new FlowPanel(app);
    app.shell.add(panel, 'right', { rank: 600 });

    const bridgeFor = (nb: NotebookPanel): Bridge => {
      let bridge = bridges.get(nb);
      if (!bridge) {
        bridge = new Bridge(nb);
        bridges.set(nb, bridge);
      }
      return bridge;
    };
    tracker.widgetAdded.connect((_, nb) => bridgeFor(nb));
    tracker.currentChanged.connect((_, nb) => panel.follow(nb ? bridgeFor(nb) : null));
    if (tracker.currentWidget) {
      panel.follow(bridgeFor(tracker.currentWidget));
    }

    const current = (): Bridge | null => {
      const nb = tracker.currentWidget;
      return nb ? bridgeFor(nb) : null;
    };

    /** Make sure flowcell is loaded in the kernel, offering to load it. */
    const ensureLoaded = async (bridge: Bridge): Promise<boolean> => {
      if (bridge.loaded) {
        return true;
      }
      const answer = await showDialog({
        title: 'Load flowcell?',
        body: 'flowcell is not loaded in this notebook\'s kernel. Run %load_ext flowcell now?',
        buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Load' })]
      });
      if (!answer.button.accept) {
        return false;
      }
      await bridge.execute('%load_ext flowcell');
      return bridge.loaded;
    };

    const activeStep = (bridge: Bridge): string | null => {
      const cell = bridge.panel.content.activeCell;
      return cell ? parseStepLine(cell.model.sharedModel.getSource())?.name ?? null : null;
    };

    app.commands.addCommand(CommandIDs.load, {
      label: 'Load flowcell in this kernel',
      execute: async () => {
        const bridge = current();
        if (bridge) {
          await bridge.execute('%load_ext flowcell');
        }
      }
    });
    app.commands.addCommand(CommandIDs.spin, {
      label: 'Spin step',
      caption: 'Save, then spin the step of the active cell (Ctrl+Shift+S)',
      isVisible: () => {
        const bridge = current();
        return !bridge || activeStep(bridge) !== null;
      },
      execute: async () => {
        const bridge = current();
        if (!bridge) {
          return;
        }
        if (!activeStep(bridge)) {
          await showDialog({ title: 'Spin step', body: 'The active cell is not a %%step cell.', buttons: [Dialog.okButton()] });
          return;
        }
        await bridge.panel.context.save();
        if (!(await ensureLoaded(bridge))) {
          return;
        }
        bridge.send({ type: 'spin-next' });
        await NotebookActions.run(bridge.panel.content, bridge.panel.sessionContext);
      }
    });
    app.commands.addCommand(CommandIDs.run, {
      label: 'Run flow',
      execute: async () => {
        const bridge = current();
        if (bridge && (await ensureLoaded(bridge))) {
          await bridge.execute('%run_flow');
        }
      }
    });
    app.commands.addCommand(CommandIDs.resume, {
      label: 'Resume from this step',
      execute: async () => {
        const bridge = current();
        const step = bridge ? activeStep(bridge) : null;
        if (bridge && step && (await ensureLoaded(bridge))) {
          await bridge.execute(`%resume ${step}`);
        }
      }
    });
    app.commands.addCommand(CommandIDs.exportFlow, {
      label: 'Export flow.py',
      execute: async () => {
        const bridge = current();
        if (bridge && (await ensureLoaded(bridge))) {
          await bridge.execute('%export_flow');
        }
      }
    });
    app.commands.addKeyBinding({ command: CommandIDs.spin, keys: ['Accel Shift S'], selector: '.jp-Notebook' });
    app.commands.addKeyBinding({ command: CommandIDs.run, keys: ['Accel Shift R'], selector: '.jp-Notebook' });
    for (const command of [CommandIDs.spin, CommandIDs.run, CommandIDs.resume, CommandIDs.exportFlow]) {
      palette?.addItem({ command, category: 'flowcell' });
    }
    void labShell;
  }
};

export default plugin;
