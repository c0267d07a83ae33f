/**
 * Reading flowcell cells on the front end: which step a cell declares.
 * Kept free of JupyterLab imports so it is unit-tested with node's test runner.
 */

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

export interface FlowState {
  type: 'state';
  flow: string;
  steps: Record<string, StepStatus>;
  svg: string;
  runs: { id: string; pathspec: string; status: string; tags: string[] }[];
  /** flowcell's version in the kernel. */
  version?: string;
}

/** Badge text and CSS class for a step's status. */
export function badge(name: string, status: StepStatus | undefined): { text: string; cls: string } {
  const label: Record<StepStatus, string> = {
    never: 'never run',
    running: 'running',
    completed: 'succeeded',
    failed: 'failed'
  };
  const s: StepStatus = status ?? 'never';
  return { text: `${name} · ${label[s] ?? s}`, cls: `fc-status-${s}` };
}

/** Index of the cell (in order) that declares `step`, or -1. */
export function findStepCell(sources: string[], step: string): number {
  return sources.findIndex(src => parseStepLine(src)?.name === step);
}

/** Whether two lists of cell ids are the same, in the same order. */
export function sameIds(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((id, i) => id === b[i]);
}
