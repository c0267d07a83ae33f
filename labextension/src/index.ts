/**
 * flowcell for JupyterLab and Jupyter Notebook 7: a badge on each %%step cell with the
 * status of its last spin or run, commands to spin / run / resume / export from the
 * keyboard, and a "Flow" side panel with the DAG and the recent runs of the active notebook.
 *
 * The kernel side is flowcell/labcomm.py; they talk over a comm (target "flowcell"),
 * so no server extension is needed. Shortcuts live in schema/plugin.json, where the
 * Settings Editor can change them.
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Dialog, ICommandPalette, showDialog } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';

import { Bridge } from './bridge';
import { parseStepLine } from './cells';
import { FlowPanel } from './panel';
import { VERSION } from './version';

namespace CommandIDs {
  export const spin = 'flowcell:spin-step';
  export const run = 'flowcell:run-flow';
  export const resume = 'flowcell:resume-step';
  export const exportFlow = 'flowcell:export-flow';
  export const load = 'flowcell:load-extension';
  export const browseRuns = 'flowcell:browse-runs';
}

/** Make sure flowcell is loaded in the kernel, offering to load it. */
async function ensureLoaded(bridge: Bridge): Promise<boolean> {
  if ((await bridge.answered()) === 'loaded') {
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
  return load(bridge);
}

/** `%load_ext flowcell`, then wait for the kernel to announce itself. */
async function load(bridge: Bridge): Promise<boolean> {
  if (bridge.loaded) {
    return true;
  }
  await bridge.execute('%load_ext flowcell');
  return (await bridge.answered()) === 'loaded';
}

function activeStep(bridge: Bridge): string | null {
  const cell = bridge.panel.content.activeCell;
  return cell ? parseStepLine(cell.model.sharedModel.getSource())?.name ?? null : null;
}

/** Append a cell showing the run browser, and run it. */
async function openRunBrowser(bridge: Bridge): Promise<void> {
  const notebook = bridge.panel.content;
  notebook.activeCellIndex = notebook.widgets.length - 1;
  NotebookActions.insertBelow(notebook);
  notebook.activeCell?.model.sharedModel.setSource('%flow_runs');
  await NotebookActions.run(notebook, bridge.panel.sessionContext);
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'flowcell:plugin',
  description: 'Step badges, spin from the keyboard, and the flow beside the notebook.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    palette: ICommandPalette | null
  ) => {
    console.log(`flowcell ${VERSION} front end is active`);
    // One bridge per open notebook, disposed with it (the bridge listens to panel.disposed).
    const bridges = new Map<NotebookPanel, Bridge>();
    const bridgeFor = (nb: NotebookPanel): Bridge => {
      let bridge = bridges.get(nb);
      if (!bridge || bridge.isDisposed) {
        bridge = new Bridge(nb);
        bridges.set(nb, bridge);
        bridge.disposed.connect(() => bridges.delete(nb));
      }
      return bridge;
    };
    const panel = new FlowPanel(app, CommandIDs.load);
    app.shell.add(panel, 'right', { rank: 600 });

    tracker.widgetAdded.connect((_, nb) => void bridgeFor(nb));
    tracker.currentChanged.connect((_, nb) => panel.follow(nb ? bridgeFor(nb) : null));
    tracker.forEach(nb => void bridgeFor(nb));
    if (tracker.currentWidget) {
      panel.follow(bridgeFor(tracker.currentWidget));
    }
    const current = (): Bridge | null => (tracker.currentWidget ? bridgeFor(tracker.currentWidget) : null);

    // A click on a step in a %flow_graph widget (flowcell.widgets) bubbles up as this
    // event: go to the step's cell, and tell the widget it was handled.
    const onStepClick = (ev: Event): void => {
      const nb = tracker.find(p => p.node.contains(ev.target as Node));
      const step = (ev as CustomEvent<{ step: string }>).detail?.step;
      const index = nb && step ? bridgeFor(nb).stepCellIndex(step) : -1;
      if (nb && index >= 0) {
        ev.preventDefault();
        nb.content.activeCellIndex = index;
        void nb.content.scrollToItem(index);
      }
    };
    document.addEventListener('flowcell:step-click', onStepClick);

    app.commands.addCommand(CommandIDs.load, {
      label: 'Load flowcell in this kernel',
      execute: async () => {
        const bridge = current();
        if (bridge) {
          await load(bridge);
        }
      }
    });
    app.commands.addCommand(CommandIDs.spin, {
      label: 'Spin step',
      caption: 'Save, then spin the step of the active cell',
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
    app.commands.addCommand(CommandIDs.browseRuns, {
      label: 'Browse runs',
      execute: async () => {
        const bridge = current();
        if (bridge && (await ensureLoaded(bridge))) {
          await openRunBrowser(bridge);
        }
      }
    });
    for (const command of [CommandIDs.spin, CommandIDs.run, CommandIDs.resume, CommandIDs.exportFlow,
      CommandIDs.browseRuns]) {
      palette?.addItem({ command, category: 'flowcell' });
    }
  }
};

export default plugin;
