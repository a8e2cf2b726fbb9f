// The commands that move raw bytes (tauri-specta types only JSON commands). Their names,
// header and result types come from the generated bindings, so nothing here is a loose string.
import { invoke } from "@tauri-apps/api/core";
import {
  ADD_TRAINING_EXAMPLE_COMMAND,
  MASK_PNG_COMMAND,
  OPEN_IMAGE_COMMAND,
  TRAINING_EXAMPLE_HEADER,
  TRAINING_THUMBNAIL_COMMAND,
  TRANSCRIBE_AUDIO_COMMAND,
  TRANSCRIBE_SETTINGS_HEADER,
} from "./bindings";
import type { OpenedImage, CommandError, TrainingExample, TranscribeSettings, Transcription } from "./types";

/**
 * JSON for a request header, in ASCII: fetch refuses or mangles anything else in a header
 * (a file name such as "café.png"), so every non-ASCII UTF-16 unit is escaped as `\uXXXX`,
 * which any JSON parser reads back as the original text.
 */
export function headerJson(value: unknown): string {
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

export type Result<T> = { status: "ok"; data: T } | { status: "error"; error: CommandError };

async function typed<T>(call: Promise<T>): Promise<Result<T>> {
  try {
    return { status: "ok", data: await call };
  } catch (e) {
    if (e instanceof Error) throw e;
    return { status: "error", error: e as CommandError };
  }
}

/** Transcribes a recording (e.g. a WAV made from the microphone) sent as raw bytes. */
export function transcribeAudio(audio: Uint8Array, settings: TranscribeSettings): Promise<Result<Transcription>> {
  return typed(
    invoke<Transcription>(TRANSCRIBE_AUDIO_COMMAND, audio, {
      headers: { [TRANSCRIBE_SETTINGS_HEADER]: headerJson(settings) },
    }),
  );
}

/** A mask's PNG bytes, as returned by `segment`'s `mask_id`. */
export function maskPng(maskId: number): Promise<Result<ArrayBuffer>> {
  return typed(invoke<ArrayBuffer>(MASK_PNG_COMMAND, { maskId }));
}

/** Opens an image (PNG or JPEG bytes) for segmenting; also starts loading the model. */
export function openImage(image: Uint8Array): Promise<Result<OpenedImage>> {
  return typed(invoke<OpenedImage>(OPEN_IMAGE_COMMAND, image));
}

/** Adds an image + mask pair (PNG or JPEG bytes each) to the training set. */
export function addTrainingExample(name: string, image: Uint8Array, mask: Uint8Array): Promise<Result<TrainingExample>> {
  const body = new Uint8Array(image.length + mask.length);
  body.set(image, 0);
  body.set(mask, image.length);
  return typed(
    invoke<TrainingExample>(ADD_TRAINING_EXAMPLE_COMMAND, body, {
      headers: { [TRAINING_EXAMPLE_HEADER]: headerJson({ name, image_bytes: image.length }) },
    }),
  );
}

/** A training example's thumbnail (its mask tinted), as PNG bytes. */
export function trainingThumbnail(exampleId: string): Promise<Result<ArrayBuffer>> {
  return typed(invoke<ArrayBuffer>(TRAINING_THUMBNAIL_COMMAND, { exampleId }));
}
