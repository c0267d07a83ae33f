/** A Gantt chart of a run's tasks: one row per worker, one bar per task, coloured by status. */
import { h, seconds } from './dom';

export interface TimelineTask {
  pathspec: string;
  step: string;
  id: string;
  status: string;
  started: number;
  finished: number | null;
  lane: number;
  foreach: { index: number; value?: string | null }[];
  /** The task it was taken from, when the run reused or cloned it instead of executing it. */
  origin?: string | null;
}

export function taskLabel(t: { step: string; foreach: { index: number; value?: string | null }[] }): string {
  const split = t.foreach.map(f => (f.value !== null && f.value !== undefined ? f.value : `#${f.index}`)).join(', ');
  return split ? `${t.step} [${split}]` : t.step;
}

export function timeline(tasks: TimelineTask[], onTask: (pathspec: string) => void, selected?: string): HTMLElement {
  if (!tasks.length) {
    return h('div', { class: 'fc-empty' }, 'No tasks yet.');
  }
  const now = Date.now() / 1000;
  const start = Math.min(...tasks.map(t => t.started));
  const end = Math.max(...tasks.map(t => t.finished ?? now));
  const span = Math.max(end - start, 1e-3);
  const lanes = Math.max(...tasks.map(t => t.lane)) + 1;
  const rows: HTMLElement[] = [];
  for (let lane = 0; lane < lanes; lane++) {
    const bars = tasks
      .filter(t => t.lane === lane)
      .map(t => {
        const left = ((t.started - start) / span) * 100;
        const width = Math.max((((t.finished ?? now) - t.started) / span) * 100, 0.4);
        const label = taskLabel(t);
        return h('button', {
          class: `fc-bar fc-status-${t.status}${t.origin ? ' fc-reused' : ''}${selected === t.pathspec ? ' fc-selected' : ''}`,
          style: `left:${left}%;width:${width}%`,
          title: `${label} — task ${t.id}, ${t.origin ? `reused from ${t.origin}` : `${t.status}, ${seconds((t.finished ?? now) - t.started)}`}`,
          onclick: () => onTask(t.pathspec)
        }, h('span', {}, label));
      });
    rows.push(h('div', { class: 'fc-lane' }, h('div', { class: 'fc-lane-name' }, `worker ${lane + 1}`), h('div', { class: 'fc-lane-track' }, bars)));
  }
  const ticks = [0, 0.25, 0.5, 0.75, 1].map(f =>
    h('span', { class: 'fc-tick', style: `left:${f * 100}%` }, seconds(f * span)));
  return h('div', { class: 'fc-timeline' },
    h('div', { class: 'fc-timeline-head' }, `${tasks.length} task${tasks.length === 1 ? '' : 's'} on ${lanes} worker${lanes === 1 ? '' : 's'}, ${seconds(span)}`),
    rows,
    h('div', { class: 'fc-lane fc-axis' }, h('div', { class: 'fc-lane-name' }), h('div', { class: 'fc-lane-track' }, ticks)));
}
