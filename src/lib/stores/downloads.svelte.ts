// Downloads as the UI shows them: one `list_downloads`, then `DownloadProgress` events only.
// A finished, failed or cancelled download stays visible (with its error) until the user
// starts it again or dismisses it; `onDone` hears each one end (the layout toasts it).
import { commands, events } from "../bindings";
import type { DownloadView } from "../types";

export class DownloadsStore {
  byId = $state<Record<string, DownloadView>>({});
  onDone: ((view: DownloadView) => void) | null = null;
  #unlisten: Array<() => void> = [];

  async start(): Promise<void> {
    this.#unlisten.push(await events.downloadProgress.listen((e) => this.apply(e.payload)));
    for (const view of await commands.listDownloads()) this.byId[view.model_id] ??= view;
  }

  apply(view: DownloadView): void {
    const before = this.byId[view.model_id];
    this.byId[view.model_id] = view;
    if (isDone(view) && !(before && isDone(before))) this.onDone?.(view);
  }

  get(modelId: string): DownloadView | undefined {
    return this.byId[modelId];
  }

  /** Whether a download of `modelId` is running now. */
  running(modelId: string): boolean {
    const view = this.byId[modelId];
    return view !== undefined && !isDone(view);
  }

  /** Starts (or joins) a download; resolves to an error message or null. */
  async download(modelId: string): Promise<string | null> {
    const result = await commands.downloadModel(modelId);
    if (result.status === "error") return result.error.message;
    this.byId[modelId] = result.data;
    return null;
  }

  async cancel(modelId: string): Promise<void> {
    await commands.cancelDownload(modelId);
  }

  dismiss(modelId: string): void {
    delete this.byId[modelId];
  }

  stop(): void {
    for (const unlisten of this.#unlisten.splice(0)) unlisten();
  }
}

export function isDone(view: DownloadView): boolean {
  return view.phase === "finished" || view.phase === "failed" || view.phase === "cancelled";
}
