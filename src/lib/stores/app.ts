// The app-wide stores, created once and shared through Svelte context.
import { getContext, setContext } from "svelte";
import { ModelStatusStore, Now } from "./models.svelte";
import { SettingsStore } from "./settings.svelte";
import { DownloadsStore } from "./downloads.svelte";
import { TrainingStore } from "./training.svelte";

export interface AppStores {
  status: ModelStatusStore;
  settings: SettingsStore;
  now: Now;
  downloads: DownloadsStore;
  training: TrainingStore;
}

export const STORES_KEY = Symbol("dormouse-stores");

export function createStores(): AppStores {
  return { status: new ModelStatusStore(), settings: new SettingsStore(), now: new Now(), downloads: new DownloadsStore(), training: new TrainingStore() };
}

export function provideStores(stores: AppStores): AppStores {
  return setContext(STORES_KEY, stores);
}

export function useStores(): AppStores {
  const stores = getContext<AppStores | undefined>(STORES_KEY);
  if (!stores) throw new Error("useStores() outside the app layout");
  return stores;
}
