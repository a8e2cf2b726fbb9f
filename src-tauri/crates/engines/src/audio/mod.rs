//! Audio input for speech-to-text: decodes WAV, FLAC, MP3 and OGG/Vorbis (symphonia) or raw
//! f32 PCM to 16 kHz mono, streaming. Each decoded packet is mixed to mono and fed through the
//! resampler (rubato) straight away, and a file is read through a 64 KiB buffer, so peak
//! memory is the 16 kHz output plus a few packets, whatever the file's size, rate or channel
//! count. Empty, corrupt, truncated, absurdly long or implausible inputs (a rate outside
//! 8–384 kHz, no channels or more than 32) get clear errors or flagged results, never a panic.

use std::io::Cursor;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use rubato::{FftFixedIn, Resampler};
use symphonia::core::audio::{SampleBuffer, SignalSpec};
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::probe::{Instantiate, Probe};
use symphonia::default::formats::{FlacReader, MpaReader, OggReader, WavReader};

use crate::error::EngineError;

mod header_checks;

/// The rate every speech model here expects.
pub const TARGET_RATE: u32 = 16_000;
/// Longest input accepted (4 hours).
pub const MAX_DURATION: Duration = Duration::from_secs(4 * 3600);
/// Sample rates accepted (telephone speech up to the highest studio rate).
pub const RATE_RANGE: std::ops::RangeInclusive<u32> = 8_000..=384_000;
/// Most channels accepted (symphonia's own limit; more is a crafted header).
pub const MAX_CHANNELS: usize = 32;

/// Mono 16 kHz samples, with what the source was.
#[derive(Clone, Debug, PartialEq)]
pub struct DecodedAudio {
    /// Samples at [`TARGET_RATE`], mono, in -1.0..=1.0.
    pub samples: Vec<f32>,
    /// The source's sample rate.
    pub source_rate: u32,
    /// The source's channel count.
    pub source_channels: usize,
    /// The file ended before its header said it would (the samples hold what was there).
    pub truncated: bool,
}

impl DecodedAudio {
    /// Length of the audio.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.samples.len() as f64 / f64::from(TARGET_RATE))
    }

    /// Whether the audio is silent (peak below -80 dBFS).
    pub fn is_silent(&self) -> bool {
        self.samples.iter().all(|s| s.abs() < 1e-4)
    }
}

/// Decodes an audio file, its format found from its contents by symphonia's probe. The file
/// is streamed, never read into memory whole.
pub fn decode_file(path: &Path) -> Result<DecodedAudio, EngineError> {
    let file = std::fs::File::open(path).map_err(|e| EngineError::io(path, e))?;
    let len = file.metadata().map_err(|e| EngineError::io(path, e))?.len();
    let name = path.display().to_string();
    if len == 0 {
        return Err(EngineError::Empty(name));
    }
    decode_source(Box::new(file), &name, MAX_DURATION)
}

/// Decodes an audio file held in memory; `name` is used in errors.
pub fn decode_bytes(bytes: Vec<u8>, name: &str) -> Result<DecodedAudio, EngineError> {
    decode_with_limit(bytes, name, MAX_DURATION)
}

fn undecodable(name: &str, reason: impl std::fmt::Display) -> EngineError {
    EngineError::Undecodable {
        what: name.to_owned(),
        reason: reason.to_string(),
    }
}

fn too_long(name: &str, seconds: f64, limit: Duration) -> EngineError {
    EngineError::TooLarge {
        what: name.to_owned(),
        actual: format!("{:.1} hours of audio", seconds / 3600.0),
        limit: format!("{:.1} hours", limit.as_secs_f64() / 3600.0),
    }
}

/// Refuses a rate or channel count no real recording has, before anything is sized from it.
fn check_format(name: &str, rate: u32, channels: usize) -> Result<(), EngineError> {
    if !RATE_RANGE.contains(&rate) {
        return Err(EngineError::InvalidRequest(format!(
            "{name} says its sample rate is {rate} Hz; only {}–{} Hz is supported",
            RATE_RANGE.start(),
            RATE_RANGE.end()
        )));
    }
    if channels == 0 || channels > MAX_CHANNELS {
        return Err(EngineError::InvalidRequest(format!(
            "{name} says it has {channels} channels; 1–{MAX_CHANNELS} are supported"
        )));
    }
    Ok(())
}

pub(crate) fn decode_with_limit(
    bytes: Vec<u8>,
    name: &str,
    limit: Duration,
) -> Result<DecodedAudio, EngineError> {
    if bytes.is_empty() {
        return Err(EngineError::Empty(name.to_owned()));
    }
    decode_source(Box::new(Cursor::new(bytes)), name, limit)
}

/// The container formats Dormouse reads, without symphonia's default ID3v2 reader: the tags
/// are skipped unread before probing ([`header_checks::skip_id3v2_tags`]), and one found
/// later in a stream is not parsed at all.
fn probe() -> &'static Probe {
    static PROBE: OnceLock<Probe> = OnceLock::new();
    PROBE.get_or_init(|| {
        let mut probe = Probe::default();
        probe.register_all::<WavReader>();
        probe.register_all::<FlacReader>();
        probe.register_all::<MpaReader>();
        probe.register_all::<OggReader>();
        probe
    })
}

/// Decodes `source`, turning a panic in the decoder into an error about this file: the checks
/// in [`header_checks`] keep every panic fuzzing has found away from symphonia, and this keeps
/// one not found yet from taking a transcription request down with a bare "task panicked".
fn decode_source(
    source: Box<dyn MediaSource>,
    name: &str,
    limit: Duration,
) -> Result<DecodedAudio, EngineError> {
    contain_panic(name, || decode_checked(source, name, limit))
}

/// Runs `decode`, or says it panicked. Everything it touches is its own, so nothing is left
/// half-changed by the unwinding.
fn contain_panic(
    name: &str,
    decode: impl FnOnce() -> Result<DecodedAudio, EngineError>,
) -> Result<DecodedAudio, EngineError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "no message".to_owned());
        tracing::error!(%name, %message, "the audio decoder panicked");
        Err(undecodable(
            name,
            format!("the audio decoder failed on it ({message}); the file is likely damaged"),
        ))
    })
}

fn decode_checked(
    source: Box<dyn MediaSource>,
    name: &str,
    limit: Duration,
) -> Result<DecodedAudio, EngineError> {
    let source = header_checks::skip_id3v2_tags(source, name)?;
    let mut stream = MediaSourceStream::new(source, Default::default());
    let not_audio = |e: &dyn std::fmt::Display| {
        undecodable(name, format!("not a supported audio format ({e})"))
    };
    // The probe scans the first MiB for a format's marker and leaves the stream at it: the
    // container's headers are checked from there, where its reader starts (a FLAC stream after
    // 96 zero bytes once slipped past checks made at the file's first byte; found by fuzzing).
    let make_reader = match probe().next(&mut stream) {
        Ok(Instantiate::Format(make_reader)) => make_reader,
        Ok(Instantiate::Metadata(_)) => return Err(not_audio(&"only metadata was found")),
        Err(e) => return Err(not_audio(&e)),
    };
    header_checks::check_metadata_lengths(&mut stream, name)?;
    let mut format = make_reader(stream, &FormatOptions::default()).map_err(|e| not_audio(&e))?;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| undecodable(name, "it holds no audio track"))?;
    let track_id = track.id;
    let params = track.codec_params.clone();
    let rate = params
        .sample_rate
        .filter(|&r| r > 0)
        .ok_or_else(|| undecodable(name, "its sample rate is unknown"))?;
    if let Some(declared) = params.channels {
        check_format(name, rate, declared.count())?;
    } else {
        check_format(name, rate, 1)?;
    }
    let declared_frames = params.n_frames;
    if let Some(frames) = declared_frames {
        let seconds = frames as f64 / f64::from(rate);
        if seconds > limit.as_secs_f64() {
            return Err(too_long(name, seconds, limit));
        }
    }
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| undecodable(name, format!("unsupported codec ({e})")))?;

    // Whole frames within the limit; the rate is at most 384 kHz, so this cannot overflow.
    let max_frames = limit.as_secs().saturating_mul(u64::from(rate));
    let mut to_16k = MonoResampler::new(rate, declared_frames)?;
    let mut packet_samples: Option<(SignalSpec, u64, SampleBuffer<f32>)> = None;
    let mut frames = 0u64;
    let mut channels = 0usize;
    let mut bad_packets = 0usize;
    let mut ended_early = false;
    loop {
        let packet = match format.next_packet() {
            Ok(packet) => packet,
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break
            }
            Err(SymphoniaError::ResetRequired) => break,
            Err(e) => {
                // A broken container after some audio: keep what was decoded.
                tracing::warn!(%name, error = %e, "audio stream ended with an error");
                ended_early = true;
                break;
            }
        };
        if packet.track_id() != track_id {
            continue;
        }
        match decoder.decode(&packet) {
            Ok(buffer) => {
                let spec = *buffer.spec();
                channels = spec.channels.count();
                check_format(name, spec.rate, channels)?;
                if spec.rate != rate {
                    return Err(undecodable(
                        name,
                        format!("its sample rate changes from {rate} Hz to {} Hz", spec.rate),
                    ));
                }
                let needed = buffer.capacity() as u64;
                let samples = match &mut packet_samples {
                    Some((s, capacity, samples)) if *s == spec && *capacity >= needed => samples,
                    slot => {
                        &mut slot
                            .insert((spec, needed, SampleBuffer::<f32>::new(needed, spec)))
                            .2
                    }
                };
                samples.copy_interleaved_ref(buffer);
                let interleaved = samples.samples();
                frames += (interleaved.len() / channels) as u64;
                if frames > max_frames {
                    return Err(too_long(name, frames as f64 / f64::from(rate), limit));
                }
                to_16k.push_interleaved(interleaved, channels)?;
            }
            Err(SymphoniaError::DecodeError(e)) => {
                bad_packets += 1;
                tracing::warn!(%name, error = %e, "skipping a corrupt audio packet");
                if bad_packets > 100 && frames == 0 {
                    return Err(undecodable(
                        name,
                        format!("no packet could be decoded ({e})"),
                    ));
                }
            }
            Err(e) => return Err(undecodable(name, e)),
        }
    }
    if channels == 0 || frames == 0 {
        return Err(EngineError::Empty(format!("{name} (no audio samples)")));
    }
    let truncated = ended_early || declared_frames.is_some_and(|declared| frames < declared);
    Ok(DecodedAudio {
        samples: to_16k.finish()?,
        source_rate: rate,
        source_channels: channels,
        truncated,
    })
}

/// Raw little-endian f32 PCM (as the recorder sends it over binary IPC), interleaved.
pub fn from_pcm_f32(bytes: &[u8], rate: u32, channels: usize) -> Result<DecodedAudio, EngineError> {
    pcm_with_limit(bytes, rate, channels, MAX_DURATION)
}

fn pcm_with_limit(
    bytes: &[u8],
    rate: u32,
    channels: usize,
    limit: Duration,
) -> Result<DecodedAudio, EngineError> {
    if bytes.is_empty() {
        return Err(EngineError::Empty("the recording".into()));
    }
    check_format("the recording", rate, channels)?;
    let frame = 4 * channels;
    if !bytes.len().is_multiple_of(frame) {
        return Err(undecodable(
            "the recording",
            format!(
                "{} bytes is not a whole number of {channels}-channel f32 frames",
                bytes.len()
            ),
        ));
    }
    let seconds = (bytes.len() / frame) as f64 / f64::from(rate);
    if seconds > limit.as_secs_f64() {
        return Err(too_long("the recording", seconds, limit));
    }
    let frames = (bytes.len() / frame) as u64;
    let mut to_16k = MonoResampler::new(rate, Some(frames))?;
    let mut interleaved = Vec::with_capacity(channels * 4096);
    for chunk in bytes.chunks(frame * 4096) {
        interleaved.clear();
        interleaved.extend(chunk.chunks_exact(4).map(|b| {
            let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if v.is_finite() {
                v.clamp(-1.0, 1.0)
            } else {
                0.0
            }
        }));
        to_16k.push_interleaved(&interleaved, channels)?;
    }
    Ok(DecodedAudio {
        samples: to_16k.finish()?,
        source_rate: rate,
        source_channels: channels,
        truncated: false,
    })
}

/// Averages interleaved channels to mono and resamples to [`TARGET_RATE`].
pub fn to_mono_16k(
    interleaved: &[f32],
    rate: u32,
    channels: usize,
) -> Result<Vec<f32>, EngineError> {
    if channels == 0 {
        return Err(EngineError::InvalidRequest("zero channels".into()));
    }
    let frames = (interleaved.len() / channels) as u64;
    let mut to_16k = MonoResampler::new(rate, Some(frames))?;
    to_16k.push_interleaved(interleaved, channels)?;
    to_16k.finish()
}

/// Band-limited resampling of mono audio (FFT-based, anti-aliased).
pub fn resample(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, EngineError> {
    let mut resampler = StreamResampler::new(from, to, Some(input.len() as u64))?;
    resampler.push(input)?;
    resampler.finish()
}

/// Mixes interleaved packets to mono and resamples them to [`TARGET_RATE`] as they come.
struct MonoResampler {
    mono: Vec<f32>,
    resampler: StreamResampler,
}

impl MonoResampler {
    fn new(rate: u32, expected_frames: Option<u64>) -> Result<Self, EngineError> {
        Ok(Self {
            mono: Vec::new(),
            resampler: StreamResampler::new(rate, TARGET_RATE, expected_frames)?,
        })
    }

    fn push_interleaved(
        &mut self,
        interleaved: &[f32],
        channels: usize,
    ) -> Result<(), EngineError> {
        if channels == 1 {
            return self.resampler.push(interleaved);
        }
        self.mono.clear();
        self.mono.extend(
            interleaved
                .chunks_exact(channels)
                .map(|frame| frame.iter().sum::<f32>() / channels as f32),
        );
        self.resampler.push(&self.mono)
    }

    fn finish(self) -> Result<Vec<f32>, EngineError> {
        self.resampler.finish()
    }
}

/// An FFT resampler fed in pieces of any size: input waits in a chunk-sized buffer, the
/// filter's delay is dropped as it comes out, and the output is trimmed to exactly
/// `input × to / from` samples at the end.
struct StreamResampler {
    from: u32,
    to: u32,
    /// `None` when the rates are equal (a copy).
    resampler: Option<FftFixedIn<f32>>,
    pending: Vec<f32>,
    /// Output samples still to drop (the filter's delay).
    skip: usize,
    input_frames: u64,
    output: Vec<f32>,
}

impl StreamResampler {
    fn new(from: u32, to: u32, expected_input: Option<u64>) -> Result<Self, EngineError> {
        if from == 0 || to == 0 {
            return Err(EngineError::InvalidRequest(format!(
                "cannot resample {from} Hz to {to} Hz"
            )));
        }
        let resampler = if from == to {
            None
        } else {
            Some(
                FftFixedIn::<f32>::new(from as usize, to as usize, 1024, 2, 1)
                    .map_err(|e| Self::failed(from, to, &e))?,
            )
        };
        let skip = resampler.as_ref().map_or(0, |r| r.output_delay());
        // Reserve the whole output once when the length is known (no doubling on growth).
        let capacity = expected_input
            .map(|n| Self::output_len(n, from, to))
            .unwrap_or(0)
            .min(MAX_DURATION.as_secs() * u64::from(to));
        Ok(Self {
            from,
            to,
            resampler,
            pending: Vec::new(),
            skip,
            input_frames: 0,
            output: Vec::with_capacity(usize::try_from(capacity).unwrap_or(0)),
        })
    }

    fn failed(from: u32, to: u32, e: &dyn std::fmt::Display) -> EngineError {
        EngineError::Inference(format!("resampling {from} Hz to {to} Hz failed: {e}"))
    }

    fn output_len(input: u64, from: u32, to: u32) -> u64 {
        (u128::from(input) * u128::from(to))
            .div_ceil(u128::from(from))
            .try_into()
            .unwrap_or(u64::MAX)
    }

    fn push(&mut self, input: &[f32]) -> Result<(), EngineError> {
        self.input_frames += input.len() as u64;
        if self.resampler.is_none() {
            self.output.extend_from_slice(input);
            return Ok(());
        }
        let mut rest = input;
        while !rest.is_empty() {
            let need = self.next_chunk_len() - self.pending.len();
            let take = need.min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.pending.len() == self.next_chunk_len() {
                self.process_pending()?;
            }
        }
        Ok(())
    }

    fn next_chunk_len(&self) -> usize {
        self.resampler.as_ref().map_or(0, |r| r.input_frames_next())
    }

    fn process_pending(&mut self) -> Result<(), EngineError> {
        let (from, to) = (self.from, self.to);
        let Some(resampler) = self.resampler.as_mut() else {
            return Ok(());
        };
        let out = resampler
            .process(&[&self.pending[..]], None)
            .map_err(|e| Self::failed(from, to, &e))?;
        self.pending.clear();
        let produced = &out[0];
        let dropped = self.skip.min(produced.len());
        self.skip -= dropped;
        self.output.extend_from_slice(&produced[dropped..]);
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<f32>, EngineError> {
        let expected = usize::try_from(Self::output_len(self.input_frames, self.from, self.to))
            .map_err(|_| EngineError::InvalidRequest("the audio is too long".into()))?;
        if self.resampler.is_some() && self.input_frames > 0 {
            // Zeros flush the filter until the delayed tail has come out.
            while self.output.len() < expected {
                let need = self.next_chunk_len() - self.pending.len();
                self.pending.resize(self.pending.len() + need, 0.0);
                self.process_pending()?;
            }
        }
        self.output.truncate(expected);
        Ok(self.output)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(
        rate: u32,
        channels: u16,
        seconds: f32,
        freq: f32,
        format: (u16, hound::SampleFormat),
    ) -> Vec<u8> {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: format.0,
            sample_format: format.1,
        };
        let mut bytes = Cursor::new(Vec::new());
        let mut writer = hound::WavWriter::new(&mut bytes, spec).expect("writer");
        let frames = (rate as f32 * seconds) as usize;
        for i in 0..frames {
            let v = (2.0 * std::f32::consts::PI * freq * i as f32 / rate as f32).sin() * 0.5;
            for _ in 0..channels {
                match format {
                    (32, hound::SampleFormat::Float) => writer.write_sample(v).expect("write"),
                    (16, _) => writer.write_sample((v * 32767.0) as i16).expect("write"),
                    (24, _) => writer
                        .write_sample((v * 8_388_607.0) as i32)
                        .expect("write"),
                    (8, _) => writer.write_sample((v * 127.0) as i8).expect("write"),
                    _ => unreachable!("test formats"),
                }
            }
        }
        writer.finalize().expect("finalize");
        bytes.into_inner()
    }

    /// Frequency estimated from zero crossings.
    fn frequency(samples: &[f32]) -> f32 {
        let crossings = samples
            .windows(2)
            .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
            .count();
        crossings as f32 * TARGET_RATE as f32 / samples.len() as f32
    }

    #[test]
    fn wav_in_any_rate_depth_and_channel_count_becomes_16k_mono() {
        let cases = [
            (44_100, 2, (16, hound::SampleFormat::Int)),
            (48_000, 1, (24, hound::SampleFormat::Int)),
            (8_000, 1, (32, hound::SampleFormat::Float)),
            (22_050, 6, (8, hound::SampleFormat::Int)),
            (16_000, 1, (16, hound::SampleFormat::Int)),
        ];
        for (rate, channels, format) in cases {
            let audio = decode_bytes(wav(rate, channels, 1.5, 440.0, format), "t.wav")
                .unwrap_or_else(|e| panic!("{rate} Hz {channels} ch: {e}"));
            assert_eq!(audio.source_rate, rate);
            assert_eq!(audio.source_channels, usize::from(channels));
            assert_eq!(audio.samples.len(), 24_000, "{rate} Hz");
            assert!(!audio.truncated);
            let f = frequency(&audio.samples);
            assert!(
                (f - 440.0).abs() < 5.0,
                "{rate} Hz: tone came out at {f} Hz"
            );
            let peak = audio.samples.iter().fold(0.0f32, |m, s| m.max(s.abs()));
            assert!((0.4..0.6).contains(&peak), "{rate} Hz: peak {peak}");
        }
    }

    #[test]
    fn downsampling_removes_what_16k_cannot_hold() {
        // 12 kHz is above the 8 kHz Nyquist limit of 16 kHz audio: it must not alias back in.
        let audio = decode_bytes(
            wav(48_000, 1, 1.0, 12_000.0, (16, hound::SampleFormat::Int)),
            "hf.wav",
        )
        .expect("decodes");
        let rms =
            (audio.samples.iter().map(|s| s * s).sum::<f32>() / audio.samples.len() as f32).sqrt();
        assert!(rms < 0.01, "aliasing: rms {rms}");
    }

    #[test]
    fn empty_garbage_and_headerless_inputs_are_clear_errors() {
        assert!(matches!(
            decode_bytes(Vec::new(), "e.wav"),
            Err(EngineError::Empty(_))
        ));
        let garbage = decode_bytes(b"this is not audio at all, just text".to_vec(), "g.mp3");
        assert!(
            matches!(garbage, Err(EngineError::Undecodable { .. })),
            "{garbage:?}"
        );
        let no_samples = wav(16_000, 1, 0.0, 440.0, (16, hound::SampleFormat::Int));
        assert!(matches!(
            decode_bytes(no_samples, "z.wav"),
            Err(EngineError::Empty(_))
        ));
        let missing = decode_file(Path::new("/nonexistent/a.wav"));
        assert!(matches!(missing, Err(EngineError::Io { .. })));
    }

    #[test]
    fn id3v2_tags_before_the_audio_change_nothing_even_ones_that_panicked_symphonia() {
        use header_checks::tests::{id3v2, id3v2_that_panicked_symphonia};
        let tone = wav(16_000, 1, 0.5, 440.0, (16, hound::SampleFormat::Int));
        let plain = decode_bytes(tone.clone(), "tone.wav").expect("decodes");
        let tagged = |tags: &[Vec<u8>]| {
            let mut bytes = tags.concat();
            bytes.extend(&tone);
            decode_bytes(bytes, "tagged.wav")
        };
        let title = id3v2(3, 0, b"TIT2\0\0\0\x04\0\0\0Hi!");
        for tags in [
            vec![title.clone()],
            vec![id3v2_that_panicked_symphonia()],
            vec![title, id3v2(4, 0x10, b""), id3v2_that_panicked_symphonia()],
        ] {
            assert_eq!(tagged(&tags).expect("decodes"), plain);
        }
        // A tag that is not at the start is not read at all: the probe finds the audio past it.
        let mut buried = b"junk".to_vec();
        buried.extend(id3v2_that_panicked_symphonia());
        buried.extend(&tone);
        assert_eq!(decode_bytes(buried, "buried.wav").expect("decodes"), plain);
    }

    #[test]
    fn a_panic_in_the_decoder_is_an_error_about_the_file() {
        let err = contain_panic("odd.mp3", || panic!("index out of bounds")).expect_err("error");
        let message = err.to_string();
        assert!(matches!(err, EngineError::Undecodable { .. }), "{message}");
        assert!(message.contains("odd.mp3"), "{message}");
        assert!(message.contains("index out of bounds"), "{message}");
        let owned = contain_panic("odd.flac", || panic!("{} frames", 3)).expect_err("error");
        assert!(owned.to_string().contains("3 frames"), "{owned}");
        let fine = contain_panic("ok.wav", || Err(EngineError::Empty("ok.wav".into())));
        assert!(matches!(fine, Err(EngineError::Empty(_))));
    }

    #[test]
    fn a_truncated_file_keeps_what_it_has_and_says_so() {
        let full = wav(16_000, 1, 2.0, 440.0, (16, hound::SampleFormat::Int));
        let cut = full[..full.len() / 2].to_vec();
        let audio = decode_bytes(cut, "cut.wav").expect("partial audio");
        assert!(audio.truncated);
        let secs = audio.duration().as_secs_f32();
        assert!((0.9..1.1).contains(&secs), "{secs}");
    }

    #[test]
    fn silence_decodes_and_is_recognised() {
        let silent = wav(16_000, 1, 1.0, 0.0, (16, hound::SampleFormat::Int));
        let audio = decode_bytes(silent, "s.wav").expect("decodes");
        assert!(audio.is_silent());
        assert_eq!(audio.samples.len(), 16_000);
    }

    #[test]
    fn absurdly_long_inputs_are_refused() {
        let two_seconds = wav(8_000, 1, 2.0, 440.0, (16, hound::SampleFormat::Int));
        let err = decode_with_limit(two_seconds, "long.wav", Duration::from_secs(1))
            .expect_err("too long");
        assert!(matches!(err, EngineError::TooLarge { .. }), "{err}");
        // Raw PCM longer than the limit is refused too.
        let pcm = vec![0u8; 4 * 8_001];
        assert!(matches!(
            pcm_with_limit(&pcm, 8_000, 1, Duration::from_secs(1)),
            Err(EngineError::TooLarge { .. })
        ));
    }

    #[test]
    fn raw_pcm_is_validated_and_converted() {
        let stereo_48k: Vec<u8> = (0..48_000)
            .flat_map(|i| {
                let v = (2.0 * std::f32::consts::PI * 300.0 * i as f32 / 48_000.0).sin() * 0.3;
                [v, v]
            })
            .flat_map(f32::to_le_bytes)
            .collect();
        let audio = from_pcm_f32(&stereo_48k, 48_000, 2).expect("valid");
        assert_eq!(audio.samples.len(), 16_000);
        assert!((frequency(&audio.samples) - 300.0).abs() < 5.0);
        assert!(matches!(
            from_pcm_f32(&[], 16_000, 1),
            Err(EngineError::Empty(_))
        ));
        assert!(matches!(
            from_pcm_f32(&[0; 7], 16_000, 1),
            Err(EngineError::Undecodable { .. })
        ));
        for (rate, channels) in [(0, 1), (7_999, 1), (384_001, 1), (16_000, 0), (16_000, 33)] {
            assert!(
                matches!(
                    from_pcm_f32(&[0; 8], rate, channels),
                    Err(EngineError::InvalidRequest(_))
                ),
                "{rate} Hz, {channels} channels"
            );
        }
        let nan = f32::NAN.to_le_bytes();
        assert_eq!(
            from_pcm_f32(&nan, 16_000, 1).expect("sanitised").samples,
            vec![0.0]
        );
    }

    /// A PCM WAV header that declares whatever it likes, followed by `data` as its samples.
    fn crafted_wav(rate: u32, channels: u16, data: &[u8]) -> Vec<u8> {
        let bits = 16u16;
        let block = channels.wrapping_mul(bits / 8);
        let mut v = Vec::new();
        v.extend_from_slice(b"RIFF");
        v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
        v.extend_from_slice(b"WAVEfmt ");
        v.extend_from_slice(&16u32.to_le_bytes());
        v.extend_from_slice(&1u16.to_le_bytes());
        v.extend_from_slice(&channels.to_le_bytes());
        v.extend_from_slice(&rate.to_le_bytes());
        v.extend_from_slice(&rate.wrapping_mul(u32::from(block)).to_le_bytes());
        v.extend_from_slice(&block.to_le_bytes());
        v.extend_from_slice(&bits.to_le_bytes());
        v.extend_from_slice(b"data");
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn a_header_with_an_impossible_rate_is_refused_before_anything_is_sized_from_it() {
        // 2^31 - 1 Hz once asked the resampler for an FFT of about a billion points.
        let data = vec![0u8; 4_000];
        for rate in [i32::MAX as u32, 1, 7_999, 384_001, u32::MAX] {
            let err =
                decode_bytes(crafted_wav(rate, 1, &data), "crafted.wav").expect_err("refused");
            assert!(
                matches!(
                    err,
                    EngineError::InvalidRequest(_) | EngineError::Undecodable { .. }
                ),
                "{rate} Hz: {err:?}"
            );
        }
        let err = decode_bytes(crafted_wav(i32::MAX as u32, 1, &data), "crafted.wav")
            .expect_err("refused");
        assert!(
            matches!(err, EngineError::InvalidRequest(ref m) if m.contains("2147483647 Hz")),
            "{err:?}"
        );
        // The limits themselves are accepted.
        for rate in [8_000, 384_000] {
            let audio = decode_bytes(crafted_wav(rate, 2, &data), "edge.wav")
                .unwrap_or_else(|e| panic!("{rate} Hz: {e}"));
            assert_eq!(audio.source_rate, rate);
        }
    }

    #[test]
    fn feeding_the_resampler_in_pieces_changes_nothing() {
        let input: Vec<f32> = (0..44_100 * 2)
            .map(|i| (i as f32 * 0.031).sin() * 0.4)
            .collect();
        let whole = resample(&input, 44_100, TARGET_RATE).expect("whole");
        assert_eq!(whole.len(), 32_000);
        let mut pieces = StreamResampler::new(44_100, TARGET_RATE, None).expect("new");
        for piece in input.chunks(777) {
            pieces.push(piece).expect("push");
        }
        assert_eq!(pieces.finish().expect("finish"), whole);
        // Equal rates are a copy.
        assert_eq!(resample(&input, 16_000, 16_000).expect("copy"), input);
    }

    #[test]
    fn a_file_decodes_the_same_as_its_bytes() {
        let bytes = wav(44_100, 2, 1.0, 440.0, (16, hound::SampleFormat::Int));
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tone.wav");
        std::fs::write(&path, &bytes).expect("write");
        let from_file = decode_file(&path).expect("file");
        let from_bytes = decode_bytes(bytes, "tone.wav").expect("bytes");
        assert_eq!(from_file, from_bytes);
        std::fs::write(&path, b"").expect("write");
        assert!(matches!(decode_file(&path), Err(EngineError::Empty(_))));
    }
}
