//! Audio input for speech-to-text: decodes WAV, FLAC, MP3 and OGG/Vorbis (symphonia) or raw
//! f32 PCM, mixes to mono and resamples to 16 kHz (rubato). Empty, corrupt, truncated and
//! absurdly long inputs get clear errors or flagged results, never a panic.

use std::io::Cursor;
use std::path::Path;
use std::time::Duration;

use rubato::{FftFixedIn, Resampler};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use crate::error::EngineError;

/// The rate every speech model here expects.
pub const TARGET_RATE: u32 = 16_000;
/// Longest input accepted (4 hours).
pub const MAX_DURATION: Duration = Duration::from_secs(4 * 3600);

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

/// Decodes an audio file, guessing its format from its contents (and its extension).
pub fn decode_file(path: &Path) -> Result<DecodedAudio, EngineError> {
    let bytes = std::fs::read(path).map_err(|e| EngineError::io(path, e))?;
    let ext = path.extension().and_then(|e| e.to_str());
    decode_bytes(bytes, &path.display().to_string(), ext)
}

/// Decodes an audio file held in memory; `name` is used in errors.
pub fn decode_bytes(
    bytes: Vec<u8>,
    name: &str,
    extension: Option<&str>,
) -> Result<DecodedAudio, EngineError> {
    decode_with_limit(bytes, name, extension, MAX_DURATION)
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

pub(crate) fn decode_with_limit(
    bytes: Vec<u8>,
    name: &str,
    extension: Option<&str>,
    limit: Duration,
) -> Result<DecodedAudio, EngineError> {
    if bytes.is_empty() {
        return Err(EngineError::Empty(name.to_owned()));
    }
    let stream = MediaSourceStream::new(Box::new(Cursor::new(bytes)), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = extension {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            stream,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .map_err(|e| undecodable(name, format!("not a supported audio format ({e})")))?;
    let mut format = probed.format;
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

    let max_frames = (limit.as_secs_f64() * f64::from(rate)) as usize;
    let mut interleaved: Vec<f32> = Vec::new();
    let mut channels = params.channels.map_or(0, |c| c.count());
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
                let mut samples = SampleBuffer::<f32>::new(buffer.capacity() as u64, spec);
                samples.copy_interleaved_ref(buffer);
                interleaved.extend_from_slice(samples.samples());
            }
            Err(SymphoniaError::DecodeError(e)) => {
                bad_packets += 1;
                tracing::warn!(%name, error = %e, "skipping a corrupt audio packet");
                if bad_packets > 100 && interleaved.is_empty() {
                    return Err(undecodable(
                        name,
                        format!("no packet could be decoded ({e})"),
                    ));
                }
            }
            Err(e) => return Err(undecodable(name, e)),
        }
        if channels > 0 && interleaved.len() / channels > max_frames {
            return Err(too_long(
                name,
                interleaved.len() as f64 / channels as f64 / f64::from(rate),
                limit,
            ));
        }
    }
    if channels == 0 || interleaved.is_empty() {
        return Err(EngineError::Empty(format!("{name} (no audio samples)")));
    }
    let frames = (interleaved.len() / channels) as u64;
    let truncated = ended_early || declared_frames.is_some_and(|declared| frames < declared);
    let samples = to_mono_16k(&interleaved, rate, channels)?;
    Ok(DecodedAudio {
        samples,
        source_rate: rate,
        source_channels: channels,
        truncated,
    })
}

/// Raw little-endian f32 PCM (as the recorder sends it over binary IPC), interleaved.
pub fn from_pcm_f32(bytes: &[u8], rate: u32, channels: usize) -> Result<DecodedAudio, EngineError> {
    if bytes.is_empty() {
        return Err(EngineError::Empty("the recording".into()));
    }
    if rate == 0 || channels == 0 || channels > 32 {
        return Err(EngineError::InvalidRequest(format!(
            "{rate} Hz with {channels} channel(s) is not a valid PCM format"
        )));
    }
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
    if seconds > MAX_DURATION.as_secs_f64() {
        return Err(too_long("the recording", seconds, MAX_DURATION));
    }
    let interleaved: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|b| {
            let v = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            if v.is_finite() {
                v.clamp(-1.0, 1.0)
            } else {
                0.0
            }
        })
        .collect();
    Ok(DecodedAudio {
        samples: to_mono_16k(&interleaved, rate, channels)?,
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
    let mono: Vec<f32> = if channels == 1 {
        interleaved.to_vec()
    } else {
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() / channels as f32)
            .collect()
    };
    resample(&mono, rate, TARGET_RATE)
}

/// Band-limited resampling of mono audio (FFT-based, anti-aliased).
pub fn resample(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, EngineError> {
    if from == to || input.is_empty() {
        return Ok(input.to_vec());
    }
    let failed = |e: &dyn std::fmt::Display| {
        EngineError::Inference(format!("resampling {from} Hz to {to} Hz failed: {e}"))
    };
    let mut resampler =
        FftFixedIn::<f32>::new(from as usize, to as usize, 1024, 2, 1).map_err(|e| failed(&e))?;
    let expected = (input.len() as u64 * u64::from(to)).div_ceil(u64::from(from)) as usize;
    let delay = resampler.output_delay();
    let mut output = Vec::with_capacity(expected + delay + 2048);
    let mut position = 0;
    // Feed whole chunks, then zeros until the delayed tail has come out.
    while output.len() < expected + delay {
        let need = resampler.input_frames_next();
        let mut chunk = vec![0.0f32; need];
        if position < input.len() {
            let take = need.min(input.len() - position);
            chunk[..take].copy_from_slice(&input[position..position + take]);
            position += take;
        }
        let out = resampler.process(&[chunk], None).map_err(|e| failed(&e))?;
        output.extend_from_slice(&out[0]);
    }
    Ok(output[delay..delay + expected].to_vec())
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
            let audio = decode_bytes(
                wav(rate, channels, 1.5, 440.0, format),
                "t.wav",
                Some("wav"),
            )
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
            None,
        )
        .expect("decodes");
        let rms =
            (audio.samples.iter().map(|s| s * s).sum::<f32>() / audio.samples.len() as f32).sqrt();
        assert!(rms < 0.01, "aliasing: rms {rms}");
    }

    #[test]
    fn empty_garbage_and_headerless_inputs_are_clear_errors() {
        assert!(matches!(
            decode_bytes(Vec::new(), "e.wav", None),
            Err(EngineError::Empty(_))
        ));
        let garbage = decode_bytes(
            b"this is not audio at all, just text".to_vec(),
            "g.mp3",
            Some("mp3"),
        );
        assert!(
            matches!(garbage, Err(EngineError::Undecodable { .. })),
            "{garbage:?}"
        );
        let no_samples = wav(16_000, 1, 0.0, 440.0, (16, hound::SampleFormat::Int));
        assert!(matches!(
            decode_bytes(no_samples, "z.wav", None),
            Err(EngineError::Empty(_))
        ));
        let missing = decode_file(Path::new("/nonexistent/a.wav"));
        assert!(matches!(missing, Err(EngineError::Io { .. })));
    }

    #[test]
    fn a_truncated_file_keeps_what_it_has_and_says_so() {
        let full = wav(16_000, 1, 2.0, 440.0, (16, hound::SampleFormat::Int));
        let cut = full[..full.len() / 2].to_vec();
        let audio = decode_bytes(cut, "cut.wav", None).expect("partial audio");
        assert!(audio.truncated);
        let secs = audio.duration().as_secs_f32();
        assert!((0.9..1.1).contains(&secs), "{secs}");
    }

    #[test]
    fn silence_decodes_and_is_recognised() {
        let silent = wav(16_000, 1, 1.0, 0.0, (16, hound::SampleFormat::Int));
        let audio = decode_bytes(silent, "s.wav", None).expect("decodes");
        assert!(audio.is_silent());
        assert_eq!(audio.samples.len(), 16_000);
    }

    #[test]
    fn absurdly_long_inputs_are_refused() {
        let two_seconds = wav(8_000, 1, 2.0, 440.0, (16, hound::SampleFormat::Int));
        let err = decode_with_limit(two_seconds, "long.wav", None, Duration::from_secs(1))
            .expect_err("too long");
        assert!(matches!(err, EngineError::TooLarge { .. }), "{err}");
        // Raw PCM longer than the limit (4 h at 1 Hz is 14 400 frames) is refused too.
        let pcm = vec![0u8; 4 * 14_401];
        assert!(matches!(
            from_pcm_f32(&pcm, 1, 1),
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
        assert!(matches!(
            from_pcm_f32(&[0; 8], 0, 1),
            Err(EngineError::InvalidRequest(_))
        ));
        let nan = f32::NAN.to_le_bytes();
        assert_eq!(
            from_pcm_f32(&nan, 16_000, 1).expect("sanitised").samples,
            vec![0.0]
        );
    }
}
