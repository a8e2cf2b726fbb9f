//! What an audio file's headers claim, checked before symphonia reads them: symphonia 0.5
//! trusts some length fields (allocating what they say; found by fuzzing, `scripts/fuzz.sh`)
//! and panics on some ID3v2 tags (symphonia issue 485), so those headers are measured or
//! skipped here first.

use std::io::{Read, Seek, SeekFrom};

use symphonia::core::io::MediaSource;

use super::undecodable;
use crate::error::EngineError;

/// A source seen from `offset` on: the audio after the ID3v2 tags at the start of a file.
/// Positions are relative to `offset`, so a format reader that seeks sees its own stream.
pub(super) struct FromOffset {
    inner: Box<dyn MediaSource>,
    offset: u64,
}

impl Read for FromOffset {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl Seek for FromOffset {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let before_start =
            || std::io::Error::new(std::io::ErrorKind::InvalidInput, "seek before the audio");
        let pos = match pos {
            SeekFrom::Start(at) => {
                SeekFrom::Start(at.checked_add(self.offset).ok_or_else(before_start)?)
            }
            relative => relative,
        };
        let at = self.inner.seek(pos)?;
        match at.checked_sub(self.offset) {
            Some(at) => Ok(at),
            None => {
                // Put the reader back where the audio starts before saying no.
                self.inner.seek(SeekFrom::Start(self.offset))?;
                Err(before_start())
            }
        }
    }
}

impl MediaSource for FromOffset {
    fn is_seekable(&self) -> bool {
        self.inner.is_seekable()
    }

    fn byte_len(&self) -> Option<u64> {
        self.inner
            .byte_len()
            .map(|len| len.saturating_sub(self.offset))
    }
}

/// More ID3v2 tags in a row than any tagger writes; past this the rest is left to symphonia,
/// which no longer reads ID3v2 (see [`super::probe`]) and finds no audio in it.
const MAX_ID3V2_TAGS: usize = 16;

/// Skips the ID3v2 tags at the start of `source` (MP3s carry them, some FLAC and WAV files
/// too). Dormouse uses none of their metadata, and symphonia 0.5.5's ID3v2 reader panics on
/// some: a 2.4 extended header whose restrictions byte has bit 6 set reaches an
/// `unreachable!()` (symphonia issue 485, reproduced here after CI's fuzz run crashed in the
/// audio target with an input it did not keep). The tags are skipped by the size in their
/// 10-byte header, their contents never parsed.
pub(super) fn skip_id3v2_tags(
    mut source: Box<dyn MediaSource>,
    name: &str,
) -> Result<Box<dyn MediaSource>, EngineError> {
    let io = |e: std::io::Error| undecodable(name, e);
    let mut start = 0u64;
    for _ in 0..MAX_ID3V2_TAGS {
        let mut header = [0u8; 10];
        if source.read_exact(&mut header).is_err() {
            break;
        }
        match id3v2_tag_len(&header) {
            Some(len) => {
                start = start.saturating_add(len);
                source.seek(SeekFrom::Start(start)).map_err(io)?;
            }
            None => break,
        }
    }
    source.seek(SeekFrom::Start(start)).map_err(io)?;
    Ok(if start == 0 {
        source
    } else {
        tracing::debug!(%name, bytes = start, "skipped the ID3v2 tags before the audio");
        Box::new(FromOffset {
            inner: source,
            offset: start,
        })
    })
}

/// The whole length of the ID3v2 tag whose header this is (header, body and footer), or
/// `None` when it is not one: "ID3", version 2.2–2.4, a 28-bit "syncsafe" size.
fn id3v2_tag_len(header: &[u8; 10]) -> Option<u64> {
    let [b'I', b'D', b'3', major, minor, flags, size @ ..] = *header else {
        return None;
    };
    if !(2..=4).contains(&major) || minor == 0xff || size.iter().any(|b| b & 0x80 != 0) {
        return None;
    }
    let body = size.iter().fold(0u64, |len, &b| (len << 7) | u64::from(b));
    let footer = if major == 4 && flags & 0x10 != 0 {
        10
    } else {
        0
    };
    Some(10 + body + footer)
}

/// FLAC metadata block types whose inner length fields symphonia trusts: it allocates what a
/// Vorbis comment or picture says it holds before reading it (found by fuzzing: a 1.4 KB file
/// asked for 2.2 GB).
const FLAC_VORBIS_COMMENT: u8 = 4;
const FLAC_PICTURE: u8 = 6;

/// Refuses a FLAC or OGG stream whose comment (or FLAC picture) claims more bytes than the
/// block or packet holding it, before symphonia sizes anything from it; other streams pass
/// untouched. The stream starts where `source` is (where the probe found its marker, which
/// need not be the file's first byte), and `source` is left there.
pub(super) fn check_metadata_lengths(
    source: &mut dyn MediaSource,
    name: &str,
) -> Result<(), EngineError> {
    let start = source.stream_position().map_err(|e| undecodable(name, e))?;
    let mut magic = [0u8; 4];
    let result = match source.read_exact(&mut magic) {
        Ok(()) if &magic == b"fLaC" => check_flac_blocks(source, name),
        Ok(()) if &magic == b"OggS" => source
            .seek(SeekFrom::Start(start))
            .map_err(|e| undecodable(name, e))
            .and_then(|_| check_ogg_comment(source, name)),
        _ => Ok(()),
    };
    source
        .seek(SeekFrom::Start(start))
        .map_err(|e| undecodable(name, e))?;
    result
}

/// Whether a metadata block's inner lengths fit in it.
type BlockCheck = fn(&[u8]) -> bool;

/// The FLAC metadata blocks after the magic: comment and picture blocks are read (a 24-bit
/// length: at most 16 MiB) and checked, the others skipped.
fn check_flac_blocks(source: &mut dyn MediaSource, name: &str) -> Result<(), EngineError> {
    let io = |e: std::io::Error| undecodable(name, e);
    // Real files have a handful of blocks; a stream of empty ones is not read forever.
    for _ in 0..4096 {
        let mut header = [0u8; 4];
        if source.read_exact(&mut header).is_err() {
            return Ok(()); // Truncated: symphonia says what is wrong.
        }
        let (last, kind) = (header[0] & 0x80 != 0, header[0] & 0x7f);
        let len = u32::from_be_bytes([0, header[1], header[2], header[3]]);
        let check: Option<(BlockCheck, &str)> = match kind {
            FLAC_VORBIS_COMMENT => Some((vorbis_comment_fits, "comment")),
            FLAC_PICTURE => Some((picture_fits, "picture")),
            _ => None,
        };
        if let Some((fits, what)) = check {
            // Only as much as the file has.
            let mut block = Vec::new();
            (&mut *source)
                .take(u64::from(len))
                .read_to_end(&mut block)
                .map_err(io)?;
            if !fits(&block) {
                return Err(undecodable(
                    name,
                    format!("its FLAC {what} claims more bytes than its metadata block holds"),
                ));
            }
        } else {
            source.seek(SeekFrom::Current(i64::from(len))).map_err(io)?;
        }
        if last {
            return Ok(());
        }
    }
    Ok(())
}

/// The longest an OGG comment packet may be before it is refused unread (cover art embedded
/// as a comment is a few MB).
const MAX_OGG_COMMENT: usize = 64 << 20;

/// The OGG/Vorbis (and Opus) comment packet, the stream's second, checked like a FLAC comment
/// block: symphonia's reader allocates what its length fields say.
fn check_ogg_comment(source: &mut dyn MediaSource, name: &str) -> Result<(), EngineError> {
    let mut packet = Vec::new();
    let mut packets = 0;
    // Pages until the second packet is complete; a page is at most 255 × 255 bytes of data.
    for _ in 0..4096 {
        let mut header = [0u8; 27];
        if source.read_exact(&mut header).is_err() || &header[..4] != b"OggS" {
            return Ok(()); // Truncated or not OGG after all: symphonia says what is wrong.
        }
        let mut lacing = vec![0u8; usize::from(header[26])];
        if source.read_exact(&mut lacing).is_err() {
            return Ok(());
        }
        for len in lacing {
            let mut segment = vec![0u8; usize::from(len)];
            if source.read_exact(&mut segment).is_err() {
                return Ok(());
            }
            packet.extend_from_slice(&segment);
            if packet.len() > MAX_OGG_COMMENT {
                return Err(undecodable(name, "its OGG header packets are too large"));
            }
            if len < 255 {
                packets += 1;
                if packets == 2 {
                    let body = packet
                        .strip_prefix(b"\x03vorbis")
                        .or_else(|| packet.strip_prefix(b"OpusTags"));
                    return match body {
                        Some(body) if !vorbis_comment_fits(body) => Err(undecodable(
                            name,
                            "its OGG comment claims more bytes than its packet holds",
                        )),
                        _ => Ok(()),
                    };
                }
                packet.clear();
            }
        }
    }
    Ok(())
}

/// Reads a little-endian (`le`) or big-endian u32 at `*at`, moving past it.
fn take_u32(block: &[u8], at: &mut usize, le: bool) -> Option<u32> {
    let bytes: [u8; 4] = block.get(*at..at.checked_add(4)?)?.try_into().ok()?;
    *at += 4;
    Some(if le {
        u32::from_le_bytes(bytes)
    } else {
        u32::from_be_bytes(bytes)
    })
}

/// Whether a length field at `*at` and the bytes it counts fit in `block`; moves past them.
fn skip_counted(block: &[u8], at: &mut usize, le: bool) -> bool {
    let Some(len) = take_u32(block, at, le) else {
        return false;
    };
    match at.checked_add(len as usize) {
        Some(end) if end <= block.len() => {
            *at = end;
            true
        }
        _ => false,
    }
}

/// A Vorbis comment block: vendor string, then a count of comments, each length-prefixed.
fn vorbis_comment_fits(block: &[u8]) -> bool {
    let mut at = 0;
    if !skip_counted(block, &mut at, true) {
        return false;
    }
    let Some(count) = take_u32(block, &mut at, true) else {
        return false;
    };
    // Each comment takes at least its 4-byte length.
    if (count as usize).saturating_mul(4) > block.len() - at {
        return false;
    }
    (0..count).all(|_| skip_counted(block, &mut at, true))
}

/// A FLAC picture block: type, MIME type, description, four numbers, the image data.
fn picture_fits(block: &[u8]) -> bool {
    let mut at = 0;
    take_u32(block, &mut at, false).is_some()
        && skip_counted(block, &mut at, false)
        && skip_counted(block, &mut at, false)
        && (0..4).all(|_| take_u32(block, &mut at, false).is_some())
        && skip_counted(block, &mut at, false)
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::Cursor;

    use super::*;
    use crate::audio::decode_bytes;

    /// A FLAC head: the magic, then `(type, body)` blocks, the last one flagged.
    fn flac(blocks: &[(u8, Vec<u8>)]) -> Vec<u8> {
        let mut out = b"fLaC".to_vec();
        for (i, (kind, body)) in blocks.iter().enumerate() {
            let last = if i + 1 == blocks.len() { 0x80 } else { 0 };
            let len = (body.len() as u32).to_be_bytes();
            out.extend([kind | last, len[1], len[2], len[3]]);
            out.extend(body);
        }
        out
    }

    fn comment(vendor_len: u32, vendor: &[u8], count: u32, comments: &[&[u8]]) -> Vec<u8> {
        let mut body = vendor_len.to_le_bytes().to_vec();
        body.extend(vendor);
        body.extend(count.to_le_bytes());
        for c in comments {
            body.extend((c.len() as u32).to_le_bytes());
            body.extend(*c);
        }
        body
    }

    #[test]
    fn flac_comments_that_claim_more_than_their_block_are_refused_before_any_allocation() {
        // Found by `scripts/fuzz.sh 600 audio`: 1.4 KB that made symphonia allocate 2.2 GB.
        let found = include_bytes!("../../tests/fixtures/fuzz-flac-comment-2gb.flac");
        let err = decode_bytes(found.to_vec(), "found.flac").expect_err("refused");
        assert!(err.to_string().contains("comment"), "{err}");
        // The same shape, made here: a vendor string said to be 4 GB long.
        let lying = flac(&[(4, comment(u32::MAX, b"x", 0, &[]))]);
        let err = decode_bytes(lying, "lying.flac").expect_err("refused");
        assert!(err.to_string().contains("claims more bytes"), "{err}");
        // A comment count no block could hold.
        let many = flac(&[(4, comment(1, b"x", u32::MAX, &[]))]);
        assert!(check_metadata_lengths(&mut Cursor::new(many), "many").is_err());
        // A picture whose data length is past the block.
        let mut picture = 3u32.to_be_bytes().to_vec();
        for field in [&b"image/png"[..], b""] {
            picture.extend((field.len() as u32).to_be_bytes());
            picture.extend(field);
        }
        picture.extend([0u8; 16]);
        picture.extend(1_000_000u32.to_be_bytes());
        let err = check_metadata_lengths(&mut Cursor::new(flac(&[(6, picture)])), "p")
            .expect_err("refused");
        assert!(err.to_string().contains("picture"), "{err}");
        // The same lie after 96 zero bytes, where symphonia's probe finds it (fuzzing found
        // this after the checks above, made at the file's first byte, let it through).
        let found = include_bytes!("../../tests/fixtures/fuzz-flac-after-zeros.flac");
        let err = decode_bytes(found.to_vec(), "zeros.flac").expect_err("refused");
        assert!(err.to_string().contains("comment"), "{err}");
        let mut buried = vec![0u8; 1000];
        buried.extend(flac(&[(4, comment(u32::MAX, b"x", 0, &[]))]));
        let err = decode_bytes(buried, "buried.flac").expect_err("refused");
        assert!(err.to_string().contains("claims more bytes"), "{err}");
        // Honest blocks pass, and the source is left at its start for symphonia.
        let honest = flac(&[
            (0, vec![0; 34]),
            (4, comment(5, b"SoX 1", 1, &[b"TITLE=Beckett"])),
        ]);
        let mut cursor = Cursor::new(honest);
        check_metadata_lengths(&mut cursor, "honest").expect("passes");
        assert_eq!(cursor.position(), 0);
        // OGG: the second packet is the comment header, checked the same way.
        let ogg = |packets: &[Vec<u8>]| {
            let mut out = Vec::new();
            for p in packets {
                out.extend(b"OggS");
                out.extend([0u8; 22]);
                let mut lacing = vec![255u8; p.len() / 255];
                lacing.push((p.len() % 255) as u8);
                out.push(lacing.len() as u8);
                out.extend(lacing);
                out.extend(p);
            }
            out
        };
        let ident = b"\x01vorbis0000".to_vec();
        let mut lie = b"\x03vorbis".to_vec();
        lie.extend(comment(u32::MAX, b"x", 0, &[]));
        let err = check_ogg_comment(&mut Cursor::new(ogg(&[ident.clone(), lie])), "o")
            .expect_err("refused");
        assert!(err.to_string().contains("OGG comment"), "{err}");
        let mut truth = b"\x03vorbis".to_vec();
        truth.extend(comment(5, b"SoX 1", 1, &[&[b'a'; 300][..]]));
        let mut cursor = Cursor::new(ogg(&[ident, truth]));
        check_metadata_lengths(&mut cursor, "o").expect("honest OGG passes");
        assert_eq!(cursor.position(), 0);
        // Not FLAC at all: untouched.
        let mut wav = Cursor::new(b"RIFF....WAVE".to_vec());
        check_metadata_lengths(&mut wav, "w").expect("not FLAC");
        assert_eq!(wav.position(), 0);
    }

    /// An ID3v2 tag: header (version `major`, `flags`), `body`, and a footer when flagged.
    pub(crate) fn id3v2(major: u8, flags: u8, body: &[u8]) -> Vec<u8> {
        let len = u32::try_from(body.len()).expect("small");
        let size = [len >> 21, len >> 14, len >> 7, len].map(|b| (b & 0x7f) as u8);
        let mut tag = b"ID3".to_vec();
        tag.extend([major, 0, flags]);
        tag.extend(size);
        tag.extend(body);
        if major == 4 && flags & 0x10 != 0 {
            tag.extend(b"3DI");
            tag.extend([major, 0, flags]);
            tag.extend(size);
        }
        tag
    }

    /// The tag that reached symphonia 0.5.5's `unreachable!()` (fuzzing found its shape in
    /// CI): ID3v2.4, an extended header flagging restrictions, a restrictions byte of 0x40.
    pub(crate) fn id3v2_that_panicked_symphonia() -> Vec<u8> {
        let mut body = vec![0, 0, 0, 6, 1, 0x10, 1, 0x40];
        body.resize(23, 0);
        id3v2(4, 0x40, &body)
    }

    #[test]
    fn id3v2_tags_are_measured_by_their_header_and_never_parsed() {
        assert_eq!(id3v2_tag_len(b"ID3\x03\0\0\0\0\x02\x01"), Some(10 + 257));
        // A 2.4 footer adds 10 bytes; a footer flag means nothing in 2.3.
        assert_eq!(id3v2_tag_len(b"ID3\x04\0\x10\0\0\0\x05"), Some(25));
        assert_eq!(id3v2_tag_len(b"ID3\x03\0\x10\0\0\0\x05"), Some(15));
        // The largest size a header can state: 28 bits.
        assert_eq!(
            id3v2_tag_len(b"ID3\x03\0\0\x7f\x7f\x7f\x7f"),
            Some(10 + (1 << 28) - 1)
        );
        // Not tags: another magic, an unknown version, a size byte with its top bit set.
        for header in [
            b"RIFF\0\0\0\0WA",
            b"ID3\x05\0\0\0\0\0\x01",
            b"ID3\x01\0\0\0\0\0\x01",
            b"ID3\x03\xff\0\0\0\0\x01",
            b"ID3\x03\0\0\x80\0\0\x01",
        ] {
            assert_eq!(id3v2_tag_len(header), None, "{header:?}");
        }
        // The tag symphonia panicked on is skipped whole, footer and all; what follows it is
        // where the audio starts, and positions count from there.
        let mut bytes = id3v2_that_panicked_symphonia();
        bytes.extend(id3v2(4, 0x10, b"TIT2"));
        bytes.extend(b"fLaC after the tags");
        let mut source = skip_id3v2_tags(Box::new(Cursor::new(bytes)), "t").expect("skips");
        assert_eq!(source.byte_len(), Some(19));
        let mut magic = [0u8; 4];
        source.read_exact(&mut magic).expect("reads");
        assert_eq!(&magic, b"fLaC");
        assert_eq!(source.stream_position().expect("tell"), 4);
        assert_eq!(source.seek(SeekFrom::Start(10)).expect("seek"), 10);
        assert_eq!(source.seek(SeekFrom::End(-2)).expect("seek"), 17);
        // Seeking back into the tags is refused, and leaves the reader at the audio's start.
        assert!(source.seek(SeekFrom::Current(-18)).is_err());
        source.read_exact(&mut magic).expect("reads");
        assert_eq!(&magic, b"fLaC");
        // A tag claiming more than the file holds leaves nothing: an error, not a panic.
        let mut short = id3v2(3, 0, &[0; 4]);
        short[9] = 0x7f;
        let err = decode_bytes(short, "short.mp3").expect_err("no audio");
        assert!(
            err.to_string().contains("not a supported audio format"),
            "{err}"
        );
        // A file that is only the panicking tag: a clear error.
        let err = decode_bytes(id3v2_that_panicked_symphonia(), "tag.mp3").expect_err("no audio");
        assert!(matches!(err, EngineError::Undecodable { .. }), "{err}");
    }
}
