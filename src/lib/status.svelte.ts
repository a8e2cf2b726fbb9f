// The live model status: one initial snapshot, then events only (no polling).
import { commands, events, type ModelStatusView } from "./bindings";

export class ModelStatusStore {
  models = $state<ModelStatusView[]>([]);
  error = $state<string | null>(null);
  #unlisten: Array<() => void> = [];

  async start(): Promise<void> {
    this.#unlisten.push(
      await events.modelStatusChanged.listen((event) => this.apply(event.payload)),
    );
    this.models = (await commands.getModelStatus()).models;
  }

  apply(model: ModelStatusView): void {
    const i = this.models.findIndex((m) => m.slot === model.slot);
    if (i >= 0) this.models[i] = model;
    else this.models.push(model);
  }

  get loaded(): ModelStatusView[] {
    return this.models.filter((m) => m.state === "loaded");
  }

  stop(): void {
    for (const unlisten of this.#unlisten.splice(0)) unlisten();
  }
}
