/** One run: header, parameters, graph by status, timeline, tasks, a task's detail, a comparison. */
import { artifactList } from './artifacts';
import { AnyModel, h, seconds, size, status, when } from './dom';
import { GraphModel, GraphView } from '../src/graphview';
import { taskLabel, timeline, TimelineTask } from './timeline';

export interface RunData {
  id: string;
  pathspec: string;
  status: string;
  user: string;
  started: number;
  finished: number | null;
  duration: number | null;
  tags: string[];
  system_tags: string[];
  params: Record<string, string>;
  reused: number;
  origin: string | null;
  graph: GraphModel;
  tasks: (TimelineTask & { attempt: number; duration: number | null; origin: string | null; taken?: 'reused' | 'cloned' | null; exception: string | null })[];
  workers: number;
}

export interface RunViewContext {
  model: AnyModel;
  run: RunData;
  detail: any;
  comparison: any;
  compareOptions: { id: string; pathspec: string }[];
  open: Set<string>;
  state: { step: string; tab: string };
  rerender: () => void;
  onTask: (pathspec: string) => void;
  onCompare?: (runId: string) => void;
  onClose?: () => void;
  disposers: (() => void)[];
}

export function renderRun(ctx: RunViewContext): HTMLElement {
  const { run } = ctx;
  const head = h('div', { class: 'fc-run-head' },
    ctx.onClose ? h('button', { class: 'fc-button fc-back', onclick: ctx.onClose, title: 'Back to all runs' }, '← Runs') : null,
    h('span', { class: 'fc-run-title' }, run.pathspec), status(run.status),
    h('span', { class: 'fc-muted' }, `${run.user} · started ${when(run.started)} · ${seconds(run.duration)}`),
    run.origin ? h('span', { class: 'fc-chip' }, `resumed from ${run.origin}`) : null,
    run.reused ? h('span', { class: 'fc-chip' }, `${run.reused} reused`) : null,
    run.tags.map(t => h('span', { class: 'fc-chip fc-tag' }, t)));
  const params = Object.keys(run.params).length
    ? h('div', { class: 'fc-params' }, Object.entries(run.params).map(([k, v]) =>
      h('span', { class: 'fc-param' }, h('span', { class: 'fc-muted' }, k), ' ', h('code', {}, v))))
    : null;
  const graph = new GraphView(run.graph, {
    selected: ctx.state.step || undefined,
    maxHeight: 560,
    onStep: step => {
      ctx.state.step = ctx.state.step === step ? '' : step;
      ctx.rerender();
    }
  });
  ctx.disposers.push(() => graph.dispose());
  const selectedTask = ctx.detail?.pathspec as string | undefined;
  const cols = h('div', { class: 'fc-run-columns' },
    h('section', { class: 'fc-card' }, h('h4', {}, 'Graph'), graph.element),
    h('section', { class: 'fc-card' }, h('h4', {}, 'Timeline'), timeline(run.tasks, ctx.onTask, selectedTask)));
  return h('div', { class: 'fc-run' }, head, params, cols, tasksTable(ctx), taskDetail(ctx), compare(ctx));
}

function tasksTable(ctx: RunViewContext): HTMLElement {
  const { run, state } = ctx;
  const tasks = state.step ? run.tasks.filter(t => t.step === state.step) : run.tasks;
  const rows = tasks.map(t => h('tr', {
    class: `fc-click${t.origin ? ' fc-reused' : ''}${ctx.detail?.pathspec === t.pathspec ? ' fc-selected' : ''}`,
    onclick: () => ctx.onTask(t.pathspec)
  },
  h('td', {}, status(t.status), t.origin ? reusedChip(t.taken ?? 'cloned', t.origin) : null),
  h('td', { class: 'fc-name' }, t.step),
  h('td', { class: 'fc-num' }, t.id),
  h('td', {}, t.foreach.map(f => h('span', { class: 'fc-chip' }, `#${f.index}`, f.value !== null && f.value !== undefined ? h('span', { class: 'fc-muted' }, ` ${f.value}`) : null))),
  h('td', { class: 'fc-num' }, t.attempt ? String(t.attempt + 1) : ''),
  h('td', {}, when(t.started)),
  h('td', { class: 'fc-num' }, seconds(t.duration)),
  h('td', { class: 'fc-muted' }, t.origin ? h('span', { class: 'fc-origin' }, `from ${t.origin}`) : t.exception ?? '')));
  const filter = state.step
    ? h('span', { class: 'fc-chip fc-filter' }, `step: ${state.step} `, h('button', { class: 'fc-link', onclick: () => { state.step = ''; ctx.rerender(); } }, '✕'))
    : h('span', { class: 'fc-muted' }, 'click a step in the graph to filter');
  return h('section', { class: 'fc-card' }, h('h4', {}, `Tasks (${tasks.length})`, ' ', filter),
    h('div', { class: 'fc-table-scroll fc-tasks-scroll' },
      h('table', { class: 'fc-table' }, h('thead', {}, h('tr', {}, ['status', 'step', 'task', 'foreach', 'attempt', 'started', 'duration', ''].map(c => h('th', {}, c)))),
        h('tbody', {}, rows))));
}

/** The card's colour variables (flowcell/cards.py) and the JupyterLab theme variables they take. */
const CARD_THEME: [string, string][] = [
  ['--fc-card-bg', '--jp-layout-color1'], ['--fc-card-fg', '--jp-ui-font-color1'],
  ['--fc-card-muted', '--jp-ui-font-color2'], ['--fc-card-border', '--jp-border-color2'],
  ['--fc-card-subtle', '--jp-layout-color2'], ['--fc-card-track', '--jp-layout-color3'],
  ['--fc-card-ok', '--jp-success-color1'], ['--fc-card-link', '--jp-content-link-color']
];

/** A flowcell card says so in its head; any other card (a Metaflow card plugin's) keeps its own look. */
const THEMABLE = 'meta[name="flowcell-card"]';

/**
 * Give a flowcell card the notebook's theme colours: the frame's document does not inherit
 * the page's CSS variables, so their current values are copied onto the card's root.
 * Outside JupyterLab (no --jp-* variables) the card follows prefers-color-scheme itself.
 */
export function themeCard(frame: HTMLIFrameElement): void {
  const doc = frame.contentDocument;
  if (!doc?.documentElement || !doc.querySelector(THEMABLE)) {
    return;
  }
  const host = getComputedStyle(frame);
  if (!host.getPropertyValue('--jp-layout-color1').trim()) {
    return;
  }
  for (const [card, theme] of CARD_THEME) {
    const value = host.getPropertyValue(theme).trim();
    if (value) {
      doc.documentElement.style.setProperty(card, value);
    }
  }
  doc.documentElement.style.colorScheme = document.body.dataset.jpThemeLight === 'false' ? 'dark' : 'light';
}

/**
 * The mark of a task the run did not execute: "reused" when `--reuse` found an equal
 * task, "cloned" when a resume took it from the run it resumed (the origin in the title).
 */
export function reusedChip(taken: 'reused' | 'cloned', origin: string): HTMLElement {
  const verb = taken === 'reused' ? 'Reused' : 'Cloned';
  return h('span', {
    class: `fc-chip fc-reused-chip fc-${taken}`,
    title: `${verb} from ${origin}: not executed in this run, its outputs taken by reference`
  }, taken);
}

/**
 * A card in a frame as tall as its content. No script runs in a card (the sandbox
 * allows none); same-origin lets the frame measure the card, again whenever the
 * card's layout changes (images loading, a chart drawn, the cell resized), and give it
 * the notebook's theme colours, again when the user switches themes.
 */
export function cardFrame(html: string, disposers?: (() => void)[]): HTMLIFrameElement {
  const frame = h('iframe', { class: 'fc-card-frame', sandbox: 'allow-same-origin', srcdoc: html, title: 'card' });
  if (html.includes("name='flowcell-card'") || html.includes('name="flowcell-card"')) {
    frame.classList.add('fc-card-themable'); // no white flash before the card has loaded
  }
  let observer: ResizeObserver | null = null;
  const fit = () => {
    const doc = frame.contentDocument;
    if (doc?.documentElement) {
      // The page's own height, not the frame's: measure the body's content box.
      const body = doc.body;
      const height = Math.ceil(Math.max(body ? body.getBoundingClientRect().height + parseFloat(getComputedStyle(body).marginTop) + parseFloat(getComputedStyle(body).marginBottom) : 0, 40));
      frame.style.height = `${height + 2}px`;
    }
  };
  frame.addEventListener('load', () => {
    themeCard(frame);
    fit();
    observer?.disconnect();
    const body = frame.contentDocument?.body;
    if (body && typeof ResizeObserver !== 'undefined') {
      observer = new ResizeObserver(fit);
      observer.observe(body);
    }
  });
  // JupyterLab marks the body once a new theme's stylesheet has loaded.
  const themes = new MutationObserver(() => themeCard(frame));
  themes.observe(document.body, { attributes: true, attributeFilter: ['data-jp-theme-light', 'data-jp-theme-name'] });
  disposers?.push(() => {
    observer?.disconnect();
    themes.disconnect();
  });
  return frame;
}

function taskDetail(ctx: RunViewContext): HTMLElement | null {
  const d = ctx.detail;
  if (!d || !d.pathspec) {
    return h('section', { class: 'fc-card fc-muted' }, 'Select a task in the timeline or the table to see its artifacts, logs and cards.');
  }
  const tabs: [string, string, () => HTMLElement][] = [
    ['artifacts', `Artifacts (${d.artifacts.length})`, () => artifactList(ctx.model, d.pathspec, d.artifacts, ctx.open, ctx.rerender)],
    ['logs', 'Logs', () => h('div', { class: 'fc-logs' },
      h('div', { class: 'fc-log-label' }, 'stdout'), h('pre', { class: 'fc-pre fc-stdout' }, d.stdout || '(empty)'),
      h('div', { class: 'fc-log-label fc-err-label' }, 'stderr'), h('pre', { class: 'fc-pre fc-stderr' }, d.stderr || '(empty)'))],
    ['cards', `Cards (${d.cards.length})`, () => d.cards.length
      ? h('div', {}, d.cards.map((c: any) => cardFrame(c.html, ctx.disposers)))
      : h('div', { class: 'fc-empty' }, 'No cards: add @card to the step.')]
  ];
  if (d.exception) {
    tabs.push(['exception', 'Exception', () => h('div', {},
      h('div', { class: 'fc-error-text' }, `${d.exception.ename}: ${d.exception.evalue}`),
      h('pre', { class: 'fc-pre fc-stderr' }, d.exception.text || ''))]);
  }
  if (!tabs.some(t => t[0] === ctx.state.tab)) {
    ctx.state.tab = d.exception ? 'exception' : 'artifacts';
  }
  const bar = h('div', { class: 'fc-tabs', role: 'tablist' }, tabs.map(([key, label]) =>
    h('button', {
      class: `fc-tab${ctx.state.tab === key ? ' fc-active' : ''}${key === 'exception' ? ' fc-tab-error' : ''}`,
      role: 'tab',
      onclick: () => { ctx.state.tab = key; ctx.rerender(); }
    }, label)));
  const body = tabs.find(t => t[0] === ctx.state.tab)![2]();
  return h('section', { class: 'fc-card' },
    h('div', { class: 'fc-task-title' }, h('span', { class: 'fc-run-title' }, d.pathspec), status(d.status),
      d.attempt ? h('span', { class: 'fc-muted' }, `attempt ${d.attempt + 1}`) : null),
    bar, h('div', { class: 'fc-tab-body' }, body));
}

function compare(ctx: RunViewContext): HTMLElement | null {
  if (!ctx.onCompare) {
    return null;
  }
  const others = ctx.compareOptions.filter(r => r.id !== ctx.run.id);
  const select = h('select', {
    class: 'fc-select',
    onchange: (ev: Event) => ctx.onCompare!((ev.target as HTMLSelectElement).value)
  }, h('option', { value: '' }, 'compare with…'), others.map(r => {
    const o = h('option', { value: r.id }, r.pathspec);
    o.selected = ctx.comparison?.b === r.pathspec;
    return o;
  }));
  const c = ctx.comparison;
  let table: HTMLElement | null = null;
  if (c && c.a) {
    const diffCount = c.params.filter((p: any) => !p.same).length + c.artifacts.filter((a: any) => !a.same).length;
    const val = (x: any) => x === null || x === undefined
      ? h('span', { class: 'fc-muted' }, 'absent')
      : (typeof x === 'string' ? h('code', {}, x)
        : h('span', {}, x.value !== undefined ? h('code', {}, x.value) : h('span', { class: 'fc-muted' }, `${x.type}, ${size(x.size)}`)));
    const row = (kind: string, r: any) => h('tr', { class: r.same ? '' : 'fc-diff' },
      h('td', { class: 'fc-diff-mark', title: r.same ? 'same' : 'different' }, r.same ? '' : '≠'),
      h('td', { class: 'fc-muted' }, kind), h('td', { class: 'fc-name' }, r.name), h('td', {}, val(r.a)), h('td', {}, val(r.b)));
    table = h('div', {},
      h('div', { class: 'fc-muted' }, diffCount ? `${diffCount} difference${diffCount === 1 ? '' : 's'}` : 'No differences in parameters or end artifacts.'),
      h('div', { class: 'fc-table-scroll' }, h('table', { class: 'fc-table fc-compare' },
        h('thead', {}, h('tr', {}, h('th', {}), h('th', {}), h('th', {}, 'name'),
          h('th', {}, c.a, ' ', status(c.a_status)), h('th', {}, c.b, ' ', status(c.b_status)))),
        h('tbody', {}, c.params.map((p: any) => row('parameter', p)), c.artifacts.map((a: any) => row('artifact', a))))));
  }
  return h('section', { class: 'fc-card' }, h('h4', {}, 'Compare ', select), table);
}

export { taskLabel };
