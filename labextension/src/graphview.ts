/**
 * The flow graph, laid out by dagre (a layered, Sugiyama-style engine: long edges get
 * routed around boxes through their own slots) and drawn as SVG with pan, zoom and fit.
 *
 * Shared by the Flow panel of the JupyterLab extension and the notebook widgets
 * (labextension/widgets bundles it): `layoutGraph` gives positions, `GraphView` draws
 * them in any container. The model is `flowcell.widgets.graph_model()`'s JSON, sent
 * as `graph` in the flowcell comm's state. Styles: style/graph.css.
 */
import { Graph, layout } from '@dagrejs/dagre';

function h(tag: string, attrs: Record<string, string | ((e: Event) => void)>, ...children: (Node | string)[]): HTMLElement {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (typeof value === 'function') {
      node.addEventListener(key.replace(/^on/, ''), value);
    } else {
      node.setAttribute(key === 'class' ? 'class' : key, value);
    }
  }
  children.forEach(c => node.append(c));
  return node;
}

/** An SVG element with attributes and children. */
export function svg(tag: string, attrs: Record<string, string | number> = {}, ...children: Node[]): SVGElement {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs)) {
    node.setAttribute(key, String(value));
  }
  children.forEach(c => node.appendChild(c));
  return node;
}

/** A duration for people: 25 ms, 1.2 s, 3 min 4 s. */
export function seconds(s: number | null | undefined): string {
  if (s === null || s === undefined) {
    return '—';
  }
  if (s < 1) {
    return `${Math.round(s * 1000)} ms`;
  }
  if (s < 60) {
    return `${s.toFixed(1)} s`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  }
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

export interface GraphNode {
  id: string;
  type?: string;
  status: string;
  duration?: number | null;
  tasks?: number;
  /** Why the step is stale against the latest run (absent or empty: up to date). */
  stale?: string[];
  /** Tasks of the step a run took from an earlier run instead of executing them: by `--reuse`, by a resume. */
  reused?: number;
  cloned?: number;
}

export interface GraphEdge {
  source: string;
  target: string;
  kind: 'linear' | 'branch' | 'foreach' | 'join' | 'conditional' | string;
  label?: string;
}

export interface GraphModel {
  nodes: GraphNode[];
  edges: GraphEdge[];
}

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

export interface Layout {
  width: number;
  height: number;
  nodes: Map<string, Box>;
  edges: { edge: GraphEdge; points: { x: number; y: number }[]; label?: { x: number; y: number } }[];
}

const NODE_H = 46;
const MARGIN = 16;

/** The box's second line: duration (or status), task count, kind of step. */
function subtitle(node: GraphNode): string {
  const parts: string[] = [];
  // A step whose every task was taken from an earlier run has no duration of its own.
  const taken = (node.reused ?? 0) + (node.cloned ?? 0) >= (node.tasks ?? 1);
  if (!taken && node.duration !== undefined && node.duration !== null) {
    parts.push(seconds(node.duration));
  } else if (!taken) {
    parts.push(node.status === 'never' ? 'not run' : node.status);
  }
  if (node.stale?.length) {
    parts.unshift('stale');
  }
  if ((node.tasks ?? 1) > 1) {
    parts.push(`${node.tasks} tasks`);
  }
  for (const [count, word] of [[node.reused, 'reused'], [node.cloned, 'cloned']] as const) {
    if (count) {
      parts.push(count >= (node.tasks ?? 1) ? word : `${count} ${word}`);
    }
  }
  if (node.type && ['foreach', 'split', 'split-switch', 'join'].includes(node.type)) {
    parts.push({ foreach: 'foreach', split: 'branch', 'split-switch': 'switch', join: 'join' }[node.type] as string);
  }
  return parts.join(' · ');
}

function nodeWidth(n: GraphNode): number {
  // An estimate of the text width keeps layout independent of fonts being loaded; the
  // smaller second line ("completed · foreach") is often the wider one.
  return Math.max(120, Math.min(260, Math.max(n.id.length * 8 + 56, subtitle(n).length * 6.6 + 32)));
}

/** Positions of every box and the route of every edge, top to bottom. */
export function layoutGraph(model: GraphModel): Layout {
  const g = new Graph({ multigraph: false });
  g.setGraph({ rankdir: 'TB', nodesep: 28, ranksep: 44, edgesep: 14, marginx: MARGIN, marginy: MARGIN });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of model.nodes) {
    g.setNode(n.id, { width: nodeWidth(n), height: NODE_H });
  }
  for (const e of model.edges) {
    if (g.hasNode(e.source) && g.hasNode(e.target)) {
      const labelled = !!e.label;
      g.setEdge(e.source, e.target, {
        width: labelled ? e.label!.length * 7 + 14 : 0,
        height: labelled ? 18 : 0,
        labelpos: 'c'
      });
    }
  }
  layout(g);
  const nodes = new Map<string, Box>();
  for (const id of g.nodes()) {
    const n = g.node(id) as unknown as Box;
    nodes.set(id, { x: n.x - n.width / 2, y: n.y - n.height / 2, width: n.width, height: n.height });
  }
  const edges = model.edges
    .filter(e => g.hasEdge(e.source, e.target))
    .map(edge => {
      const label = g.edge(edge.source, edge.target) as unknown as { points: { x: number; y: number }[]; x?: number; y?: number };
      return {
        edge,
        points: label.points,
        label: edge.label && label.x !== undefined ? { x: label.x, y: label.y as number } : undefined
      };
    });
  const graph = g.graph() as { width?: number; height?: number };
  return { width: graph.width ?? 0, height: graph.height ?? 0, nodes, edges };
}

/** A smooth path through dagre's route points. */
function pathOf(points: { x: number; y: number }[]): string {
  if (points.length < 3) {
    return `M${points.map(p => `${p.x},${p.y}`).join(' L')}`;
  }
  let d = `M${points[0].x},${points[0].y}`;
  for (let i = 1; i < points.length - 1; i++) {
    const mid = { x: (points[i].x + points[i + 1].x) / 2, y: (points[i].y + points[i + 1].y) / 2 };
    d += ` Q${points[i].x},${points[i].y} ${i === points.length - 2 ? `${points[i + 1].x},${points[i + 1].y}` : `${mid.x},${mid.y}`}`;
  }
  return d;
}

const KIND_TITLES: Record<string, string> = {
  linear: 'next step',
  branch: 'static branch',
  foreach: 'foreach: one task per item',
  join: 'into a join',
  conditional: 'conditional branch'
};

export interface GraphViewOptions {
  /** Called with a step's name when its box is clicked. */
  onStep?: (step: string, event: MouseEvent) => void;
  /** Largest height of the view before it scrolls/zooms inside (px). */
  maxHeight?: number;
  selected?: string;
  /** Where a user left an earlier view of the same graph (see `GraphView.moved`). */
  initial?: ViewState | null;
}

let instances = 0;

export interface ViewportOptions {
  /** Largest height of the view before it scrolls/zooms inside (px). */
  maxHeight?: number;
  /** Elements a drag may not start on (they take clicks), e.g. the step boxes. */
  handles?: string;
  /** Where a user left an earlier view of the same graph (see `Viewport.moved`). */
  initial?: ViewState | null;
}

/** Zoom and pan a user chose. */
export interface ViewState {
  scale: number;
  tx: number;
  ty: number;
}

/**
 * Pan, zoom and fit for an SVG drawing: `canvas` is sized to the viewport and `group`
 * (the drawing, `size` px at 1:1) is transformed inside it.
 */
export class Viewport {
  /** The zoom in / zoom out / fit buttons. */
  readonly toolbar: HTMLElement;
  /** The clipped area holding the canvas. */
  readonly element: HTMLElement;
  private scale = 1;
  private tx = 0;
  private ty = 0;
  private resize: ResizeObserver | null = null;
  private userMoved = false;

  constructor(
    private readonly canvas: SVGElement,
    private readonly group: SVGElement,
    private readonly size: { width: number; height: number },
    private readonly options: ViewportOptions = {}
  ) {
    const zoom = (factor: number) => () => this.zoomBy(factor);
    this.toolbar = h('div', { class: 'fc-graph-tools' },
      h('button', { class: 'fc-icon-button fc-zoom-in', title: 'Zoom in', onclick: zoom(1.25) }, '+'),
      h('button', { class: 'fc-icon-button fc-zoom-out', title: 'Zoom out', onclick: zoom(0.8) }, '−'),
      h('button', { class: 'fc-icon-button fc-zoom-fit', title: 'Fit to view', onclick: () => { this.userMoved = false; this.fit(); } }, '⤢'));
    this.element = h('div', { class: 'fc-graph-viewport' }, canvas);
    this.enablePanZoom();
    if (typeof ResizeObserver !== 'undefined') {
      this.resize = new ResizeObserver(() => {
        if (!this.userMoved) {
          this.fit();
        }
      });
      this.resize.observe(this.element);
    }
    const initial = options.initial;
    if (initial) {
      ({ scale: this.scale, tx: this.tx, ty: this.ty } = initial);
      this.userMoved = true;
      requestAnimationFrame(() => this.apply());
    } else {
      requestAnimationFrame(() => this.fit());
    }
  }

  /** The zoom and pan a user chose, or null while the view fits itself. */
  get moved(): ViewState | null {
    return this.userMoved ? { scale: this.scale, tx: this.tx, ty: this.ty } : null;
  }

  /** Scale to the container's width (never above 1:1), height to match. */
  fit(): void {
    const available = this.element.clientWidth || this.size.width;
    const maxHeight = this.options.maxHeight ?? 520;
    this.scale = Math.min(1, available / Math.max(1, this.size.width), maxHeight / Math.max(1, this.size.height));
    this.scale = Math.max(this.scale, 0.2);
    this.tx = Math.max(0, (available - this.size.width * this.scale) / 2);
    this.ty = 0;
    this.element.style.height = `${Math.ceil(Math.min(maxHeight, this.size.height * this.scale)) + 4}px`;
    this.apply();
  }

  zoomBy(factor: number, cx?: number, cy?: number): void {
    const x = cx ?? this.element.clientWidth / 2;
    const y = cy ?? this.element.clientHeight / 2;
    const next = Math.min(3, Math.max(0.2, this.scale * factor));
    this.tx = x - ((x - this.tx) * next) / this.scale;
    this.ty = y - ((y - this.ty) * next) / this.scale;
    this.scale = next;
    this.userMoved = true;
    this.apply();
  }

  private apply(): void {
    this.canvas.setAttribute('width', String(this.element.clientWidth || this.size.width));
    this.canvas.setAttribute('height', String(this.element.clientHeight || this.size.height));
    this.group.setAttribute('transform', `translate(${this.tx},${this.ty}) scale(${this.scale})`);
  }

  private enablePanZoom(): void {
    const viewport = this.element;
    let drag: { x: number; y: number; tx: number; ty: number } | null = null;
    viewport.addEventListener('wheel', ev => {
      if (!(ev.ctrlKey || ev.metaKey)) {
        return; // a plain wheel scrolls the notebook
      }
      ev.preventDefault();
      const r = viewport.getBoundingClientRect();
      this.zoomBy(ev.deltaY < 0 ? 1.1 : 0.9, ev.clientX - r.left, ev.clientY - r.top);
    }, { passive: false });
    viewport.addEventListener('pointerdown', ev => {
      if (this.options.handles && (ev.target as Element).closest(this.options.handles)) {
        return;
      }
      drag = { x: ev.clientX, y: ev.clientY, tx: this.tx, ty: this.ty };
      viewport.setPointerCapture(ev.pointerId);
    });
    viewport.addEventListener('pointermove', ev => {
      if (drag) {
        this.tx = drag.tx + ev.clientX - drag.x;
        this.ty = drag.ty + ev.clientY - drag.y;
        this.userMoved = true;
        this.apply();
      }
    });
    viewport.addEventListener('pointerup', () => (drag = null));
  }

  dispose(): void {
    this.resize?.disconnect();
  }
}

/** The graph in a scrollable, zoomable viewport that fits its container's width. */
export class GraphView {
  readonly element: HTMLElement;
  private readonly view: Viewport;
  private readonly group: SVGElement;
  private lay: Layout;

  constructor(private model: GraphModel, private options: GraphViewOptions = {}) {
    this.lay = layoutGraph(model);
    const marker = `fc-arrow-${++instances}`;
    this.group = svg('g');
    const canvas = svg('svg', { class: 'fc-graph-canvas', role: 'img', 'aria-label': 'flow graph' },
      svg('defs', {},
        svg('marker', { id: marker, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
          svg('path', { d: 'M0,0 L10,5 L0,10 z', class: 'fc-arrowhead' })),
        svg('marker', { id: `${marker}-join`, viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 8, markerHeight: 8, orient: 'auto' },
          svg('path', { d: 'M0,5 L5,0 L10,5 L5,10 z', class: 'fc-arrowhead fc-arrowhead-join' }))),
      this.group);
    this.draw(marker);
    this.view = new Viewport(canvas, this.group, this.lay,
      { maxHeight: options.maxHeight, handles: '.fc-node', initial: options.initial });
    this.element = h('div', { class: 'fc-graph' }, this.view.toolbar, this.view.element, this.legend());
  }

  private legend(): HTMLElement {
    const kinds = new Set(this.model.edges.map(e => e.kind));
    const items = ['branch', 'foreach', 'join', 'conditional'].filter(k => kinds.has(k));
    return h('div', { class: 'fc-graph-legend' },
      ...items.map(k => h('span', { class: `fc-legend-item fc-legend-${k}` }, h('span', { class: 'fc-legend-line' }, ''), KIND_TITLES[k])));
  }

  private draw(marker: string): void {
    for (const { edge, points, label } of this.lay.edges) {
      const path = svg('path', {
        d: pathOf(points),
        class: `fc-edge fc-edge-${edge.kind}`,
        'marker-end': `url(#${edge.kind === 'join' ? `${marker}-join` : marker})`
      });
      path.appendChild(svg('title', {}, document.createTextNode(`${edge.source} → ${edge.target}: ${KIND_TITLES[edge.kind] ?? edge.kind}`)));
      this.group.appendChild(path);
      if (edge.label && label) {
        const w = edge.label.length * 7 + 12;
        this.group.appendChild(svg('g', { class: `fc-edge-label fc-edge-label-${edge.kind}` },
          svg('rect', { x: label.x - w / 2, y: label.y - 9, width: w, height: 18, rx: 9 }),
          svg('text', { x: label.x, y: label.y + 4, 'text-anchor': 'middle' }, document.createTextNode(edge.label))));
      }
    }
    for (const node of this.model.nodes) {
      const box = this.lay.nodes.get(node.id);
      if (!box) {
        continue;
      }
      const g = svg('g', {
        class: `fc-node fc-node-${node.type ?? 'linear'} fc-status-${node.status}${node.stale?.length ? ' fc-stale' : ''}${(node.reused ?? 0) + (node.cloned ?? 0) >= (node.tasks ?? 1) ? ' fc-reused' : ''}${this.options.selected === node.id ? ' fc-selected' : ''}`,
        'data-step': node.id,
        transform: `translate(${box.x},${box.y})`,
        tabindex: 0
      });
      if (node.type === 'foreach' || (node.tasks ?? 1) > 1) {
        // A stack of cards behind the box: this step fans out into several tasks.
        g.appendChild(svg('rect', { x: 6, y: -6, width: box.width, height: box.height, rx: 8, class: 'fc-node-stack' }));
        g.appendChild(svg('rect', { x: 3, y: -3, width: box.width, height: box.height, rx: 8, class: 'fc-node-stack' }));
      }
      g.appendChild(svg('rect', { width: box.width, height: box.height, rx: 8, class: 'fc-node-box' }));
      g.appendChild(svg('rect', { width: 5, height: box.height - 12, x: 0, y: 6, rx: 2, class: 'fc-node-bar' }));
      g.appendChild(svg('text', { x: 16, y: 19, class: 'fc-node-name' }, document.createTextNode(node.id)));
      g.appendChild(svg('text', { x: 16, y: 35, class: 'fc-node-sub' }, document.createTextNode(subtitle(node))));
      const stale = node.stale?.length ? `\nstale:\n${node.stale.map(r => `• ${r}`).join('\n')}` : '';
      g.appendChild(svg('title', {}, document.createTextNode(`${node.id} (${node.type ?? 'step'}): ${node.status}${stale}`)));
      g.addEventListener('click', ev => this.options.onStep?.(node.id, ev as MouseEvent));
      g.addEventListener('keydown', ev => {
        if ((ev as KeyboardEvent).key === 'Enter') {
          this.options.onStep?.(node.id, ev as unknown as MouseEvent);
        }
      });
      this.group.appendChild(g);
    }
  }

  /** Scale to the container's width (never above 1:1), height to match. */
  fit(): void {
    this.view.fit();
  }

  /** The zoom and pan a user chose, or null while the view fits itself. */
  get moved(): ViewState | null {
    return this.view.moved;
  }

  zoomBy(factor: number, cx?: number, cy?: number): void {
    this.view.zoomBy(factor, cx, cy);
  }

  dispose(): void {
    this.view.dispose();
    this.element.remove();
  }
}
