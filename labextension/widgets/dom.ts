/** Small DOM helpers shared by flowcell's widgets: elements are built, never parsed from HTML. */

export type Child = Node | string | null | undefined | false;

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | number | boolean | ((e: Event) => void) | undefined> = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) {
      continue;
    }
    if (typeof value === 'function') {
      node.addEventListener(key.replace(/^on/, ''), value as EventListener);
    } else if (key === 'class') {
      node.className = String(value);
    } else {
      node.setAttribute(key, value === true ? '' : String(value));
    }
  }
  append(node, children);
  return node;
}

export function append(node: Node, children: (Child | Child[])[]): void {
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    node.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
  }
}

// The graph view (bundled here too) owns these; one copy serves the panel and the widgets.
export { seconds, svg } from '../src/graphview';

export function size(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(1)} ${units[i]}`;
}

export function when(ts: number | null | undefined): string {
  if (!ts) {
    return '—';
  }
  const d = new Date(ts * 1000);
  const pad = (x: number) => String(x).padStart(2, '0');
  const today = new Date();
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (d.toDateString() === today.toDateString()) {
    return `today ${time}`;
  }
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}

const ICONS: Record<string, string> = {
  completed: '✓',
  failed: '✕',
  running: '●',
  crashed: '⚠',
  never: '○'
};

/** A status pill: icon and word, coloured by the theme's state colours. */
export function status(state: string): HTMLElement {
  return h('span', { class: `fc-status fc-status-${state}`, title: state }, ICONS[state] ?? '•', ' ', state);
}

export function statusDot(state: string): HTMLElement {
  return h('span', { class: `fc-dot fc-status-${state}`, title: state });
}

/** Model listeners that are all removed when the view goes away. */
export class Listeners {
  private offs: (() => void)[] = [];

  on(model: AnyModel, names: string[], callback: () => void): void {
    for (const name of names) {
      model.on(`change:${name}`, callback);
      this.offs.push(() => model.off(`change:${name}`, callback));
    }
  }

  add(off: () => void): void {
    this.offs.push(off);
  }

  dispose(): void {
    this.offs.forEach(off => off());
    this.offs = [];
  }
}

/** The part of anywidget's model API the views use. */
export interface AnyModel {
  get(name: string): any;
  set(name: string, value: unknown): void;
  save_changes(): void;
  on(event: string, callback: (...args: any[]) => void): void;
  off(event?: string | null, callback?: ((...args: any[]) => void) | null): void;
  send(content: unknown, callbacks?: unknown, buffers?: unknown): void;
}

export function setAll(model: AnyModel, values: Record<string, unknown>): void {
  for (const [k, v] of Object.entries(values)) {
    model.set(k, v);
  }
  model.save_changes();
}
