//! Whisper base (converted to GGML by scripts/fixtures.sh from registry packages) on real
//! speech, through whisper.cpp and the model manager.

mod fixtures;

use std::sync::{Arc, Mutex, OnceLock};

use engines::audio::{decode_file, TARGET_RATE};
use engines::speech::{word_error_rate, SpeechLoader, TranscribeOptions, WhisperModel};
use engines::vad::SileroVad;
use fixtures::{fixture, padded_with_silence};
use model_manager::{ModelKey, ModelManager, ModelSpec, ModelState};

const BECKETT: &str = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better.";

fn whisper() -> &'static WhisperModel {
    static MODEL: OnceLock<WhisperModel> = OnceLock::new();
    MODEL.get_or_init(|| WhisperModel::load(&fixture("ggml-base.bin")).expect("whisper base loads"))
}

/// A manager with whisper base registered as `transcription`, no idle checker.
fn whisper_manager() -> (ModelManager, ModelKey) {
    let key = ModelKey::new("transcription").expect("key");
    let spec = ModelSpec::with_path("whisper-base", fixture("ggml-base.bin"));
    let manager = ModelManager::builder()
        .idle_checker(false)
        .register(key.clone(), Arc::new(SpeechLoader), spec)
        .build()
        .expect("manager");
    (manager, key)
}

/// Asserts the bar: at most 10 % word error rate against `reference`.
fn assert_wer_at_most_10(reference: &str, text: &str, label: &str) {
    let wer = word_error_rate(reference, text);
    assert!(wer <= 0.10, "{label} WER {:.1}%: {text:?}", wer * 100.0);
}

fn english() -> TranscribeOptions {
    TranscribeOptions {
        language: Some("en".into()),
        ..Default::default()
    }
}

#[test]
fn beckett_is_transcribed_within_ten_percent_word_error() {
    let audio = decode_file(&fixture("beckett.wav")).expect("decodes");
    let transcript = whisper()
        .transcribe(&audio.samples, &english(), None)
        .expect("transcribes");
    assert_wer_at_most_10(BECKETT, &transcript.text, "");
    assert!(!transcript.segments.is_empty());
    let last = transcript.segments.last().expect("segments");
    assert!(last.end <= audio.duration().as_secs_f32() + 0.5, "{last:?}");
}

#[test]
fn flac_ogg_and_mp3_at_any_rate_decode_and_transcribe_alike() {
    let reference = decode_file(&fixture("beckett.wav"))
        .expect("decodes")
        .duration()
        .as_secs_f32();
    for name in [
        "beckett.flac",
        "beckett.ogg",
        "beckett.mp3",
        "beckett-44k-stereo.mp3",
    ] {
        let audio = decode_file(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let seconds = audio.duration().as_secs_f32();
        assert!(
            (seconds - reference).abs() < 0.15,
            "{name}: {seconds} s vs {reference} s"
        );
        assert!(!audio.truncated, "{name}");
        let transcript = whisper()
            .transcribe(&audio.samples, &english(), None)
            .expect("transcribes");
        assert_wer_at_most_10(BECKETT, &transcript.text, name);
    }
    let stereo = decode_file(&fixture("beckett-44k-stereo.mp3")).expect("decodes");
    assert_eq!((stereo.source_rate, stereo.source_channels), (44_100, 2));
}

#[test]
fn synthetic_espeak_speech_is_transcribed_too() {
    let audio = decode_file(&fixture("espeak.wav")).expect("decodes");
    assert_ne!(
        audio.source_rate, TARGET_RATE,
        "espeak writes 22 kHz: the resampler is exercised"
    );
    let transcript = whisper()
        .transcribe(&audio.samples, &english(), None)
        .expect("transcribes");
    let sentence =
        std::fs::read_to_string(fixture("espeak.txt")).expect("the sentence espeak said");
    assert_wer_at_most_10(&sentence, &transcript.text, "");
}

/// German is transcribed as German when asked, and translated into English when asked. The
/// clip is short and robotic: whisper base's exact wording of its second half varies with
/// thread scheduling (seen: "dir heute" / "die Häuser" / "für heute"), so only the stable
/// opening is checked; language detection is covered on Beckett's recording.
#[test]
fn german_is_transcribed_as_german_and_translated_into_english() {
    let audio = decode_file(&fixture("espeak-de.wav")).expect("decodes");
    let sentence = std::fs::read_to_string(fixture("espeak-de.txt")).expect("sentence");
    assert!(sentence.starts_with("Guten Morgen"));
    let german = TranscribeOptions {
        language: Some("de".into()),
        ..Default::default()
    };
    let transcript = whisper()
        .transcribe(&audio.samples, &german, None)
        .expect("transcribes");
    assert!(
        transcript.text.to_lowercase().starts_with("guten morgen"),
        "{:?}",
        transcript.text
    );

    let translate = TranscribeOptions {
        language: Some("de".into()),
        translate: true,
        ..Default::default()
    };
    let english = whisper()
        .transcribe(&audio.samples, &translate, None)
        .expect("translates");
    assert!(
        english.text.to_lowercase().starts_with("good morning"),
        "{:?}",
        english.text
    );
}

#[test]
fn vad_trims_padding_and_timestamps_stay_on_the_original_audio() {
    let vad = SileroVad::load(&fixture("silero_vad.onnx")).expect("vad");
    let speech = decode_file(&fixture("beckett.wav"))
        .expect("decodes")
        .samples;
    let padded = padded_with_silence(&speech, 3);
    let transcript = whisper()
        .transcribe(&padded, &english(), Some(&vad))
        .expect("transcribes");
    assert_wer_at_most_10(BECKETT, &transcript.text, "");
    let total = padded.len() as f32 / TARGET_RATE as f32;
    assert!(
        transcript.speech_seconds < total - 5.0,
        "the 6 s of silence went: {}",
        transcript.speech_seconds
    );
    let first = transcript.segments.first().expect("segments");
    assert!(
        first.start >= 2.5,
        "the first words start after the 3 s of silence: {first:?}"
    );
}

#[test]
fn silence_and_empty_input_give_an_empty_transcript() {
    let vad = SileroVad::load(&fixture("silero_vad.onnx")).expect("vad");
    let silence = vec![0.0f32; 2 * TARGET_RATE as usize];
    for (samples, vad) in [
        (&silence[..], None),
        (&silence[..], Some(&vad)),
        (&[][..], None),
    ] {
        let transcript = whisper()
            .transcribe(samples, &english(), vad)
            .expect("no error");
        assert!(
            transcript.text.is_empty() && transcript.segments.is_empty(),
            "{transcript:?}"
        );
    }
}

#[test]
fn whisper_is_loaded_used_and_freed_through_the_manager() {
    let (manager, key) = whisper_manager();
    {
        let lease = manager.acquire(&key).expect("loads");
        let model = lease.downcast::<WhisperModel>().expect("whisper");
        assert!(model.info().multilingual);
        let audio = decode_file(&fixture("beckett.wav")).expect("decodes");
        let transcript = model
            .transcribe(&audio.samples, &english(), None)
            .expect("transcribes");
        assert_wer_at_most_10(BECKETT, &transcript.text, "through the manager");
    }
    let status = manager.status();
    let resident = status.models[0].resident_bytes.expect("loaded");
    assert!(resident >= 140_000_000, "at least the weights: {resident}");
    let report = manager.unload_all();
    assert_eq!(report.unloaded.len(), 1);
    assert!(
        report.unloaded[0]
            .bytes_freed
            .is_some_and(|b| b > 50_000_000),
        "{report:?}"
    );
    assert_eq!(manager.status().models[0].state, ModelState::Idle);
}

#[test]
fn a_wrong_model_file_is_a_clear_error_and_changes_nothing() {
    let (manager, key) = whisper_manager();
    drop(manager.acquire(&key).expect("loads"));
    // The user picks the VAD model by mistake as their whisper model.
    let err = manager
        .set_spec(
            &key,
            ModelSpec::with_path("custom", fixture("silero_vad.onnx")),
        )
        .and_then(|()| manager.acquire(&key).map(drop))
        .expect_err("not whisper");
    assert!(err.to_string().contains("not a GGML file"), "{err}");
    assert_eq!(manager.status().models[0].state, ModelState::Failed);
    // Choosing the right file again works.
    manager
        .set_spec(
            &key,
            ModelSpec::with_path("whisper-base", fixture("ggml-base.bin")),
        )
        .expect("known");
    drop(manager.acquire(&key).expect("loads again"));
}

/// The line Dormouse's whisper.cpp patch logs when a transcription reuses the encoder pass
/// of the language detection.
const REUSED: &str = "reusing the language detection's encoder pass";

/// whisper.cpp's log lines written on this thread while `f` runs.
fn whisper_log_lines<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    use tracing::field::{Field, Visit};
    use tracing_subscriber::layer::{Context, SubscriberExt};

    struct Capture(Arc<Mutex<Vec<String>>>);
    struct Message<'a>(&'a mut String);
    impl Visit for Message<'_> {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                *self.0 = format!("{value:?}");
            }
        }
    }
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            if event.metadata().target().starts_with("whisper_rs") {
                let mut line = String::new();
                event.record(&mut Message(&mut line));
                self.0.lock().expect("log lines").push(line);
            }
        }
    }
    let lines = Arc::new(Mutex::new(Vec::new()));
    let subscriber = tracing_subscriber::registry().with(Capture(Arc::clone(&lines)));
    let out = tracing::subscriber::with_default(subscriber, f);
    let lines = lines.lock().expect("log lines").clone();
    (out, lines)
}

#[test]
fn language_detection_runs_the_encoder_once_for_the_first_window() {
    // Dormouse's patch to whisper.cpp (engines/cmake/whisper_patch.cmake, applied through
    // .cargo/config.toml): the transcription reuses the encoder pass that detected the
    // language, and says so in whisper.cpp's log. Without the patch the line is missing.
    let audio = decode_file(&fixture("beckett.wav")).expect("decodes");
    let (detected, lines) = whisper_log_lines(|| {
        whisper().transcribe(&audio.samples, &TranscribeOptions::default(), None)
    });
    let detected = detected.expect("detects and transcribes");
    assert!(
        lines.iter().any(|l| l.contains(REUSED)),
        "whisper.cpp was built without Dormouse's patch (run `cargo clean -p whisper-rs-sys`?); its log: {lines:?}"
    );
    // The reused encoding gives the words the given language gives (compared as words: this
    // test is about the encoding, not the punctuation).
    let (given, lines) =
        whisper_log_lines(|| whisper().transcribe(&audio.samples, &english(), None));
    let given = given.expect("transcribes");
    assert!(
        !lines.iter().any(|l| l.contains(REUSED)),
        "no detection, nothing to reuse: {lines:?}"
    );
    assert_eq!(
        word_error_rate(&given.text, &detected.text),
        0.0,
        "{:?} against {:?}",
        detected.text,
        given.text
    );
    assert_wer_at_most_10(BECKETT, &detected.text, "language detected");
}

#[test]
fn the_same_audio_gives_the_same_words_on_every_call() {
    // Upstream whisper.cpp reseeds decoder 0's random generator only when the state is made,
    // so a model's third and fourth transcriptions of Beckett differed from its first two
    // ("Never tried" against "ever tried"); Dormouse's patch reseeds it on every call. Its
    // own model, so that the calls are this test's first four.
    let model = WhisperModel::load(&fixture("ggml-base.bin")).expect("whisper base loads");
    let audio = decode_file(&fixture("beckett.wav")).expect("decodes");
    let texts: Vec<String> = (0..4)
        .map(|_| {
            model
                .transcribe(&audio.samples, &english(), None)
                .expect("transcribes")
                .text
        })
        .collect();
    assert!(texts.iter().all(|t| *t == texts[0]), "{texts:#?}");
    assert_wer_at_most_10(BECKETT, &texts[0], "every call");
}

#[test]
fn a_detection_encoded_with_another_audio_context_is_not_reused() {
    // whisper.cpp detects the language before it sets this call's audio context, so after a
    // whole-window call the detection of a fitted-context call encodes the whole window: the
    // patch must encode again rather than decode a 30 s encoding as a fitted one. Its own
    // model, so that no other test's call changes the context in between.
    let model = WhisperModel::load(&fixture("ggml-base.bin")).expect("whisper base loads");
    let audio = decode_file(&fixture("espeak.wav")).expect("decodes");
    let fitted = |language: Option<&str>| TranscribeOptions {
        language: language.map(str::to_owned),
        decoding: engines::speech::WhisperDecoding {
            fit_audio_context: true,
            ..Default::default()
        },
        ..Default::default()
    };
    model
        .transcribe(&audio.samples, &TranscribeOptions::default(), None)
        .expect("whole window");
    let (detected, lines) =
        whisper_log_lines(|| model.transcribe(&audio.samples, &fitted(None), None));
    let detected = detected.expect("detects and transcribes");
    assert!(!lines.iter().any(|l| l.contains(REUSED)), "{lines:?}");
    // A fitted context loses words on this sentence (7–29 % measured, before and after the
    // patch reseeded decoder 0), so they are held to the reference loosely; a 30 s encoding
    // decoded as a fitted one gives nothing or noise.
    let reference = std::fs::read_to_string(fixture("espeak.txt")).expect("reference");
    let wer = word_error_rate(&reference, &detected.text);
    assert!(wer <= 0.35, "WER {:.0} %: {:?}", wer * 100.0, detected.text);
}

#[test]
fn the_language_is_detected_when_none_is_given() {
    // whisper base is multilingual: with no language set it detects English.
    let audio = decode_file(&fixture("beckett.wav")).expect("decodes");
    let auto = whisper()
        .transcribe(&audio.samples, &TranscribeOptions::default(), None)
        .expect("detects");
    assert_wer_at_most_10(BECKETT, &auto.text, "language detected");
}
