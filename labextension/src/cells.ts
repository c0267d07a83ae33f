/**
 * Reading flowcell cells on the front end: which step a cell declares.
 * Kept free of JupyterLab imports so it is unit-tested with node's test runner.
 */
import type { GraphModel } from './graphview';

export interface StepHeader {
  name: string;
  join: boolean;
  decorators: string[];
}

const STEP_LINE = /^%%step\s+([A-Za-z_][A-Za-z0-9_]*)\s*(\(\s*[A-Za-z_][A-Za-z0-9_]*\s*\))?\s*(.*)$/;

/** The step a cell's source declares on its first line, or null for any other cell. */
export function parseStepLine(source: string): StepHeader | null {
  const first = source.replace(/^\s*\n/, '').split('\n', 1)[0].trimEnd();
  const match = STEP_LINE.exec(first);
  if (!match) {
    return null;
  }
  const rest = match[3].trim();
  const decorators = rest
    ? rest
        .split(/\s+(?=@)/)
        .map(d => d.trim())
        .filter(d => d.startsWith('@'))
    : [];
  return { name: match[1], join: Boolean(match[2]), decorators };
}

export type StepStatus = 'never' | 'running' | 'completed' | 'failed';

/** The steps that are stale against the flow's latest run, with the reasons (most specific first). */
export interface StaleState {
  run?: string | null;
  steps?: Record<string, string[]>;
}

export interface FlowState {
  type: 'state';
  flow: string;
  steps: Record<string, StepStatus>;
  /** The flow's graph (flowcell.widgets.graph_model), laid out in the front end; null while a cell does not parse. */
  graph: GraphModel | null;
  runs: { id: string; pathspec: string; status: string; tags: string[] }[];
  /** Steps stale against the latest run (absent from kernels older than the stale state). */
  stale?: StaleState;
  /** flowcell's version in the kernel. */
  version?: string;
}

/**
 * Badge text, CSS class and tooltip for a step's status. A step that succeeded but is
 * stale against the latest run (its cell, module code, a parameter it read... changed)
 * shows "stale", and the tooltip says why; running and failed steps keep their status.
 */
export function badge(
  name: string,
  status: StepStatus | undefined,
  stale?: StaleState
): { text: string; cls: string; title: string } {
  const label: Record<StepStatus, string> = {
    never: 'never run',
    running: 'running',
    completed: 'succeeded',
    failed: 'failed'
  };
  const s: StepStatus = status ?? 'never';
  const reasons = stale?.steps?.[name];
  if (s === 'completed' && reasons && reasons.length) {
    const title = [`${name} is stale against run ${stale?.run ?? '?'}:`, ...reasons.map(r => `• ${r}`)].join('\n');
    return { text: `${name} · stale`, cls: 'fc-status-stale', title };
  }
  return { text: `${name} · ${label[s] ?? s}`, cls: `fc-status-${s}`, title: '' };
}

/** Index of the cell (in order) that declares `step`, or -1. */
export function findStepCell(sources: string[], step: string): number {
  return sources.findIndex(src => parseStepLine(src)?.name === step);
}

/** Whether two lists of cell ids are the same, in the same order. */
export function sameIds(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((id, i) => id === b[i]);
}
