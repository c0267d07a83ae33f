/** The run browser: a sortable, filterable, paged table of runs; a click opens the run view. */
import { AnyModel, h, Listeners, seconds, setAll, status, when } from './dom';
import { renderRun, RunViewContext } from './runview';

const COLUMNS: [string, string, boolean][] = [
  // key, title, sortable
  ['status', 'status', true],
  ['id', 'run', true],
  ['user', 'user', true],
  ['started', 'started', true],
  ['duration', 'duration', true],
  ['tags', 'tags', false],
  ['reused', 'reused', false]
];

export function renderRuns(model: AnyModel, el: HTMLElement): () => void {
  const listeners = new Listeners();
  const root = h('div', { class: 'fc-root fc-runs' });
  el.appendChild(root);
  const open = new Set<string>();
  const state = { step: '', tab: '' };
  let disposers: (() => void)[] = [];
  let timer: number | undefined;

  const debounced = (name: string, value: unknown) => {
    window.clearTimeout(timer);
    timer = window.setTimeout(() => setAll(model, { [name]: value }), 300);
  };

  const toolbar = (): HTMLElement => {
    const ns = h('input', {
      class: 'fc-input', type: 'search', placeholder: 'all namespaces', value: model.get('namespace'),
      title: 'Namespace (a tag such as user:NAME); empty for every run',
      oninput: (ev: Event) => debounced('namespace', (ev.target as HTMLInputElement).value)
    });
    const tags = h('input', {
      class: 'fc-input', type: 'search', placeholder: 'tags, comma-separated', value: (model.get('tag_filter') as string[]).join(', '),
      title: 'Runs having every one of these tags',
      oninput: (ev: Event) => debounced('tag_filter', (ev.target as HTMLInputElement).value.split(',').map(s => s.trim()).filter(Boolean))
    });
    const st = h('select', { class: 'fc-select', title: 'Status', onchange: (ev: Event) => setAll(model, { status_filter: (ev.target as HTMLSelectElement).value }) },
      ['', 'completed', 'failed', 'running'].map(s => {
        const o = h('option', { value: s }, s || 'any status');
        o.selected = model.get('status_filter') === s;
        return o;
      }));
    return h('div', { class: 'fc-toolbar' },
      h('span', { class: 'fc-title' }, model.get('flow')),
      h('label', { class: 'fc-field' }, h('span', {}, 'namespace'), ns),
      h('label', { class: 'fc-field' }, h('span', {}, 'tags'), tags),
      st,
      h('button', { class: 'fc-icon-button', title: 'Refresh', onclick: () => model.send({ type: 'refresh' }) }, '↻'));
  };

  const pager = (): HTMLElement => {
    const total = model.get('total') as number;
    const page = model.get('page') as number;
    const size = model.get('page_size') as number;
    const first = total ? page * size + 1 : 0;
    const last = Math.min(total, (page + 1) * size);
    const pages = Math.max(1, Math.ceil(total / size));
    return h('div', { class: 'fc-pager' },
      h('span', { class: 'fc-muted fc-count' }, `${first.toLocaleString()}–${last.toLocaleString()} of ${total.toLocaleString()} runs`),
      h('button', { class: 'fc-icon-button', title: 'First page', disabled: page <= 0, onclick: () => setAll(model, { page: 0 }) }, '«'),
      h('button', { class: 'fc-icon-button', title: 'Previous page', disabled: page <= 0, onclick: () => setAll(model, { page: page - 1 }) }, '‹'),
      h('span', { class: 'fc-muted fc-page' }, `page ${(page + 1).toLocaleString()} of ${pages.toLocaleString()}`),
      h('button', { class: 'fc-icon-button', title: 'Next page', disabled: page + 1 >= pages, onclick: () => setAll(model, { page: page + 1 }) }, '›'),
      h('button', { class: 'fc-icon-button', title: 'Last page', disabled: page + 1 >= pages, onclick: () => setAll(model, { page: pages - 1 }) }, '»'));
  };

  const table = (): HTMLElement => {
    const sort = model.get('sort') as string;
    const desc = model.get('descending') as boolean;
    const head = h('tr', {}, COLUMNS.map(([key, title, sortable]) => h('th', {
      class: sortable ? `fc-sortable${sort === key ? ' fc-sorted' : ''}` : '',
      'aria-sort': sort === key ? (desc ? 'descending' : 'ascending') : undefined,
      onclick: sortable ? () => setAll(model, sort === key ? { descending: !desc } : { sort: key, descending: key !== 'user' && key !== 'status' ? true : false, page: 0 }) : undefined
    }, title, sortable && sort === key ? (desc ? ' ▾' : ' ▴') : '')));
    const rows = (model.get('rows') as any[]).map(r => h('tr', {
      class: 'fc-click', tabindex: 0, title: `Open ${r.pathspec}`,
      onclick: () => setAll(model, { selected: r.id }),
      onkeydown: (ev: Event) => { if ((ev as KeyboardEvent).key === 'Enter') { setAll(model, { selected: r.id }); } }
    },
    h('td', {}, status(r.status)),
    h('td', { class: 'fc-name' }, r.pathspec),
    h('td', {}, r.user),
    h('td', {}, when(r.started)),
    h('td', { class: 'fc-num' }, seconds(r.duration)),
    h('td', {}, (r.tags as string[]).map(t => h('span', { class: 'fc-chip fc-tag' }, t))),
    h('td', { class: 'fc-num' }, r.reused ? String(r.reused) : '')));
    const empty = rows.length ? null : h('div', { class: 'fc-empty' }, 'No runs match these filters.');
    return h('div', {}, h('div', { class: 'fc-table-scroll' }, h('table', { class: 'fc-table fc-run-table' }, h('thead', {}, head), h('tbody', {}, rows))), empty);
  };

  const render = () => {
    disposers.forEach(d => d());
    disposers = [];
    const error = model.get('error') ? h('div', { class: 'fc-error-banner' }, model.get('error')) : null;
    const run = model.get('run');
    let body: HTMLElement;
    if (model.get('selected') && run && run.pathspec) {
      const ctx: RunViewContext = {
        model, run, detail: model.get('task_detail'), comparison: model.get('comparison'),
        compareOptions: model.get('rows'), open, state, rerender: render, disposers,
        onTask: pathspec => setAll(model, { task: pathspec }),
        onCompare: id => setAll(model, { compare_with: id }),
        onClose: () => { state.step = ''; setAll(model, { selected: '' }); }
      };
      body = renderRun(ctx);
    } else {
      body = h('div', {}, toolbar(), table(), pager());
    }
    root.replaceChildren(...[error, body].filter((x): x is HTMLElement => x !== null));
  };

  listeners.on(model, ['rows', 'total', 'page', 'sort', 'descending', 'run', 'task_detail', 'comparison', 'previews', 'error', 'selected'], () => {
    // Re-rendering while the user types would take the focus away: inputs re-render on data only.
    const active = document.activeElement;
    if (active && root.contains(active) && active.tagName === 'INPUT') {
      const caret = (active as HTMLInputElement).selectionStart;
      const index = Array.from(root.querySelectorAll('input')).indexOf(active as HTMLInputElement);
      render();
      const again = root.querySelectorAll('input')[index] as HTMLInputElement | undefined;
      again?.focus();
      if (again && caret !== null) {
        again.setSelectionRange(caret, caret);
      }
    } else {
      render();
    }
  });
  render();
  return () => {
    window.clearTimeout(timer);
    listeners.dispose();
    disposers.forEach(d => d());
    root.remove();
  };
}
