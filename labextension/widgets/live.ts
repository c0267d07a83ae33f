/** `%run_flow` while it runs: one row per step with a progress bar and elapsed time; then the run view. */
import { AnyModel, h, Listeners, seconds, setAll, status } from './dom';
import { renderRun, RunViewContext } from './runview';

interface StepProgress {
  name: string;
  done: number;
  running: number;
  failed: number;
  /** Of `done`, the tasks taken from earlier runs: by `--reuse` or by `%resume` (from `origins`; `origin`: the last one's pathspec). */
  reused: number;
  cloned: number;
  origins: string[];
  origin: string | null;
  expected: number | null;
  started: number | null;
  finished: number | null;
}

export function renderLive(model: AnyModel, el: HTMLElement): () => void {
  const listeners = new Listeners();
  const root = h('div', { class: 'fc-root fc-live' });
  el.appendChild(root);
  const open = new Set<string>();
  const state = { step: '', tab: '' };
  let disposers: (() => void)[] = [];

  const table = (): HTMLElement => {
    const live = model.get('live') as { pathspec: string; status: string; started: number; finished: number | null; steps: StepProgress[]; errors: { pathspec: string; text: string }[] };
    const now = Date.now() / 1000;
    const steps = live.steps ?? [];
    const rows = steps.map(s => {
      const total = Math.max(s.expected ?? 0, s.done + s.running + s.failed);
      const state = s.failed ? 'failed' : s.running ? 'running' : s.done ? 'completed' : 'never';
      const pct = (x: number) => (total ? (x / total) * 100 : 0);
      const elapsed = s.started === null ? null : (s.finished ?? (s.running ? now : s.started)) - s.started;
      return h('tr', {},
        h('td', {}, status(state)),
        h('td', { class: 'fc-name' }, s.name, takenCount(s, 'reused'), takenCount(s, 'cloned')),
        h('td', { class: 'fc-progress-cell' }, h('div', { class: 'fc-progress', title: `${s.done} of ${total || '?'} tasks done` },
          h('div', { class: 'fc-progress-done', style: `width:${pct(s.done - reused(s))}%` }),
          h('div', { class: 'fc-progress-reused', style: `width:${pct(reused(s))}%` }),
          h('div', { class: 'fc-progress-failed', style: `width:${pct(s.failed)}%` }),
          h('div', { class: 'fc-progress-running', style: `width:${pct(s.running)}%` }))),
        h('td', { class: 'fc-num' }, `${s.done}${total ? ` / ${total}` : ''}`),
        h('td', { class: 'fc-num' }, s.running ? `${s.running} running` : ''),
        h('td', { class: 'fc-num fc-error-text' }, s.failed ? `${s.failed} failed` : ''),
        h('td', { class: 'fc-num' }, seconds(elapsed)));
    });
    const elapsed = (live.finished ?? now) - (live.started ?? now);
    const done = steps.reduce((a, s) => a + s.done, 0);
    const taken = (['reused', 'cloned'] as const)
      .map(how => [steps.reduce((a, s) => a + (s[how] ?? 0), 0), how] as const)
      .filter(([n]) => n).map(([n, how]) => `${n} ${how}`).join(', ');
    return h('div', {},
      h('div', { class: 'fc-run-head' }, h('span', { class: 'fc-run-title' }, live.pathspec || 'starting…'), status(live.status || 'running'),
        h('span', { class: 'fc-muted' }, `${done} task${done === 1 ? '' : 's'} done${taken ? ` (${taken})` : ''} · ${seconds(elapsed)}`)),
      h('table', { class: 'fc-table fc-live-table' },
        h('thead', {}, h('tr', {}, ['', 'step', 'progress', 'done', 'running', 'failed', 'elapsed'].map(c => h('th', {}, c)))),
        h('tbody', {}, rows)),
      (live.errors ?? []).map(e => h('div', { class: 'fc-error-banner' }, h('b', {}, e.pathspec), ' ', e.text)));
  };

  const render = () => {
    disposers.forEach(d => d());
    disposers = [];
    const run = model.get('run');
    if (run && run.pathspec) {
      const ctx: RunViewContext = {
        model, run, detail: model.get('task_detail'), comparison: model.get('comparison'), compareOptions: [],
        open, state, rerender: render, disposers, onTask: pathspec => setAll(model, { task: pathspec })
      };
      root.replaceChildren(renderRun(ctx));
    } else {
      root.replaceChildren(table());
    }
  };
  // Elapsed times tick in the browser; the kernel sends only changes of state.
  const tick = window.setInterval(() => {
    const run = model.get('run');
    if (!(run && run.pathspec) && (model.get('live')?.status ?? 'running') === 'running') {
      render();
    }
  }, 1000);
  listeners.on(model, ['live', 'run', 'task_detail', 'previews'], render);
  render();
  return () => {
    window.clearInterval(tick);
    listeners.dispose();
    disposers.forEach(d => d());
    root.remove();
  };
}

/** Tasks of the step taken from earlier runs, reused or cloned (a kernel older than these fields sends none). */
const reused = (s: StepProgress): number => (s.reused ?? 0) + (s.cloned ?? 0);

/** "3 reused" (or "3 cloned"), naming the origin in its title: the task for one, the runs for several. */
function takenCount(s: StepProgress, how: 'reused' | 'cloned'): HTMLElement | null {
  const n = s[how] ?? 0;
  if (!n) {
    return null;
  }
  const from = reused(s) === 1 && s.origin ? s.origin : (s.origins ?? []).join(', ');
  return h('span', {
    class: `fc-chip fc-reused-chip fc-${how}`,
    title: `${n === 1 ? how[0].toUpperCase() + how.slice(1) : `${n} tasks ${how}`} from ${from}: not executed in this run, outputs taken by reference`
  }, `${n} ${how}`);
}
