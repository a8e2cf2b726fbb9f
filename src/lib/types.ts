// The shapes the front end reads, as Rust serialises them (tauri-specta also exports the
// looser shapes Rust accepts as input; reading code wants these).
export type {
  MemorySettings_Serialize as MemorySettings,
  ModelInfo_Serialize as ModelInfo,
  ModelStatusView_Serialize as ModelStatusView,
  SettingsView_Serialize as SettingsView,
  StatusView_Serialize as StatusView,
  UnloadSummary_Serialize as UnloadSummary,
  UnloadedView_Serialize as UnloadedView,
  TranscribeSettings_Deserialize as TranscribeSettings,
  DownloadView_Serialize as DownloadView,
  DownloadOffer_Serialize as DownloadOffer,
} from "./bindings";
export type {
  CommandError,
  DeletedModel,
  DownloadErrorKind,
  DownloadFailure,
  DownloadPhase,
  ModelStateView,
  OpenedImage,
  SegmentResult,
  SettingsPatch,
  Slot,
  StrategyChoice,
  Task,
  Transcription,
} from "./bindings";
