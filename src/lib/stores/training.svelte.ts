// Training as the UI shows it: the training set (from `list_training_examples`, refreshed
// after each change), and the running or last job (one `training_status` for its history,
// then `TrainingProgress` events only). `onDone` hears each job end (the layout toasts it).
import { commands, events } from "../bindings";
import type { TrainingExample, TrainingPoint, TrainingView } from "../types";

export class TrainingStore {
  examples = $state<TrainingExample[]>([]);
  view = $state<TrainingView | null>(null);
  history = $state<TrainingPoint[]>([]);
  onDone: ((view: TrainingView) => void) | null = null;
  #unlisten: Array<() => void> = [];

  async start(): Promise<void> {
    this.#unlisten.push(await events.trainingProgress.listen((e) => this.apply(e.payload)));
    const current = await commands.trainingStatus();
    if (current && (!this.view || this.view.job_id <= current.job_id)) {
      this.view = current;
      this.history = current.history;
    }
    await this.refreshExamples();
  }

  async refreshExamples(): Promise<void> {
    this.examples = await commands.listTrainingExamples();
  }

  apply(view: TrainingView): void {
    const before = this.view;
    if (!before || before.job_id !== view.job_id) this.history = [];
    const last = view.last;
    if (last && this.history.at(-1)?.step !== last.step) this.history = [...this.history, last];
    this.view = view;
    if (isFinished(view) && !(before && before.job_id === view.job_id && isFinished(before))) this.onDone?.(view);
  }

  /** Whether a job is running now. */
  get running(): boolean {
    return this.view !== null && !isFinished(this.view);
  }

  stop(): void {
    for (const unlisten of this.#unlisten.splice(0)) unlisten();
  }
}

export function isFinished(view: TrainingView): boolean {
  return view.phase === "done" || view.phase === "failed" || view.phase === "cancelled";
}
