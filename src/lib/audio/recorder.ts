// Records the microphone with Web Audio and hands back a WAV. The caller warms the model the
// moment recording starts (warm on intent), not when the recording is sent.
import { encodeWav } from "./wav";

export class Recorder {
  #context: AudioContext | null = null;
  #stream: MediaStream | null = null;
  #node: ScriptProcessorNode | null = null;
  #chunks: Float32Array[] = [];

  async start(): Promise<void> {
    if (!navigator.mediaDevices?.getUserMedia) {
      throw new Error("This system gives Dormouse no access to a microphone.");
    }
    this.#stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true } });
    this.#context = new AudioContext();
    const source = this.#context.createMediaStreamSource(this.#stream);
    this.#node = this.#context.createScriptProcessor(4096, 1, 1);
    this.#chunks = [];
    this.#node.onaudioprocess = (e) => this.#chunks.push(new Float32Array(e.inputBuffer.getChannelData(0)));
    source.connect(this.#node);
    this.#node.connect(this.#context.destination);
  }

  /** Stops and returns the recording as a 16-bit PCM WAV (the engine resamples it). */
  async stop(): Promise<Uint8Array> {
    const rate = this.#context?.sampleRate ?? 48_000;
    this.#node?.disconnect();
    this.#stream?.getTracks().forEach((t) => t.stop());
    await this.#context?.close();
    const length = this.#chunks.reduce((n, c) => n + c.length, 0);
    const samples = new Float32Array(length);
    let offset = 0;
    for (const chunk of this.#chunks) {
      samples.set(chunk, offset);
      offset += chunk.length;
    }
    this.#context = null;
    this.#stream = null;
    this.#node = null;
    this.#chunks = [];
    return encodeWav(samples, rate);
  }
}
