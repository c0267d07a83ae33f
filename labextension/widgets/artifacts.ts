/** The artifact list with previews on demand, shared by the inspector and the run view. */
import { AnyModel, h, size } from './dom';

export interface ArtifactRow {
  name: string;
  type: string;
  size: number;
  flag?: string;
}

interface Preview {
  kind: 'table' | 'array' | 'image' | 'text' | 'error';
  summary: string;
  [key: string]: any;
}

const SHORT_TEXT = 600;

export function renderPreview(p: Preview | undefined): HTMLElement {
  if (!p) {
    return h('div', { class: 'fc-loading' }, 'Loading…');
  }
  const summary = p.summary ? h('div', { class: 'fc-preview-summary' }, p.summary) : null;
  switch (p.kind) {
    case 'table': {
      const head = h('tr', {}, h('th', {}, ''), (p.columns as string[]).map((c, i) =>
        h('th', {}, c, h('div', { class: 'fc-dtype' }, (p.dtypes as string[])[i]))));
      const body = (p.rows as string[][]).map((row, i) =>
        h('tr', {}, h('th', { class: 'fc-index' }, (p.index as string[])[i]), row.map(v => h('td', {}, v))));
      const shape = p.shape as number[];
      const note = `${shape[0]} rows × ${shape[1]} columns${shape[0] > body.length ? `, first ${body.length} shown` : ''}${p.more_columns ? `, ${p.more_columns} more columns` : ''}`;
      return h('div', { class: 'fc-preview' }, h('div', { class: 'fc-preview-summary' }, note),
        h('div', { class: 'fc-table-scroll' }, h('table', { class: 'fc-table fc-df' }, h('thead', {}, head), h('tbody', {}, body))));
    }
    case 'array': {
      const stats = p.stats ? h('div', { class: 'fc-preview-stats' }, p.stats) : null;
      return h('div', { class: 'fc-preview' },
        h('div', { class: 'fc-kv' }, h('span', {}, 'shape'), h('code', {}, `(${(p.shape as number[]).join(', ')})`),
          h('span', {}, 'dtype'), h('code', {}, p.dtype)), stats, h('pre', { class: 'fc-pre' }, p.text));
    }
    case 'image':
      return h('div', { class: 'fc-preview' }, summary, h('img', { class: 'fc-image', src: p.src, alt: 'artifact image' }));
    case 'error':
      return h('div', { class: 'fc-preview fc-error-text' }, p.text);
    default: {
      const text = String(p.text ?? '');
      const pre = h('pre', { class: 'fc-pre' }, text.length > SHORT_TEXT ? text.slice(0, SHORT_TEXT) + '…' : text);
      const more = text.length > SHORT_TEXT
        ? h('button', {
          class: 'fc-link', onclick: (ev: Event) => {
            pre.textContent = text + (p.length > text.length ? `\n… (${p.length - text.length} more characters not shown)` : '');
            (ev.target as HTMLElement).remove();
          }
        }, `show more (${p.length} characters)`)
        : null;
      return h('div', { class: 'fc-preview' }, summary, pre, more);
    }
  }
}

/**
 * One row per artifact; clicking a row asks the kernel for its preview (the bytes are
 * read only then) and shows it below the row.
 */
export function artifactList(model: AnyModel, task: string, rows: ArtifactRow[], open: Set<string>,
  rerender: () => void): HTMLElement {
  if (!rows.length) {
    return h('div', { class: 'fc-empty' }, 'This task has no artifacts.');
  }
  const previews = (model.get('previews') ?? {}) as Record<string, Preview>;
  const body: HTMLElement[] = [];
  const showFlag = rows.some(r => r.flag);
  for (const a of rows) {
    const key = `${task}/${a.name}`;
    const isOpen = open.has(key);
    body.push(h('tr', {
      class: `fc-art-row${isOpen ? ' fc-open' : ''}`,
      tabindex: 0,
      title: isOpen ? 'Hide the preview' : 'Show a preview (loads this artifact)',
      onclick: () => {
        if (open.has(key)) {
          open.delete(key);
        } else {
          open.add(key);
          if (!previews[key]) {
            model.send({ type: 'preview', task, name: a.name });
          }
        }
        rerender();
      }
    },
    h('td', { class: 'fc-caret' }, isOpen ? '▾' : '▸'),
    h('td', { class: 'fc-name' }, a.name),
    h('td', { class: 'fc-type' }, a.type),
    h('td', { class: 'fc-num' }, size(a.size)),
    showFlag ? h('td', {}, a.flag ? h('span', { class: `fc-flag fc-flag-${a.flag.replace(' ', '-')}` }, a.flag) : '') : null));
    if (isOpen) {
      body.push(h('tr', { class: 'fc-preview-row' }, h('td', {}), h('td', { colspan: showFlag ? 4 : 3 }, renderPreview(previews[key]))));
    }
  }
  const head = h('tr', {}, h('th', {}), h('th', {}, 'artifact'), h('th', {}, 'type'), h('th', { class: 'fc-num' }, 'size'),
    showFlag ? h('th', {}, 'this step') : null);
  return h('table', { class: 'fc-table fc-artifacts' }, h('thead', {}, head), h('tbody', {}, body));
}
