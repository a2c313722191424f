//! The character sets `btoa`/`atob` accept, as Cyclr documents them: text is encoded to bytes in
//! the named charset before base64, and decoded from bytes after it.
//!
//! Written by hand rather than with `encoding_rs`: that crate follows the WHATWG Encoding
//! Standard, where "iso-8859-1" means windows-1252, UTF-16 cannot be encoded, and UTF-7 and UTF-32
//! do not exist — none of which matches Cyclr's (.NET) behaviour.

use unicode_normalization::UnicodeNormalization;

/// A character set named by a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    Ascii,
    Latin1,
    Utf7,
    Utf8,
    Utf16Le,
    Utf16Be,
    Utf32Le,
    Utf32Be,
}

impl Charset {
    /// Parses a label case-insensitively, ignoring `-` and `_`; `None` (no argument) is UTF-8.
    /// Unqualified UTF-16 and UTF-32 are little-endian, as in .NET.
    pub fn from_label(label: Option<&str>) -> Result<Self, String> {
        let Some(label) = label else {
            return Ok(Charset::Utf8);
        };
        let key: String = label
            .chars()
            .filter(|c| *c != '-' && *c != '_' && !c.is_whitespace())
            .flat_map(char::to_lowercase)
            .collect();
        Ok(match key.as_str() {
            "" | "utf8" => Charset::Utf8,
            "ascii" | "usascii" => Charset::Ascii,
            "iso88591" | "latin1" | "l1" => Charset::Latin1,
            "utf7" => Charset::Utf7,
            "utf16" | "utf16le" | "unicode" => Charset::Utf16Le,
            "utf16be" | "unicodefffe" | "bigendianunicode" => Charset::Utf16Be,
            "utf32" | "utf32le" => Charset::Utf32Le,
            "utf32be" => Charset::Utf32Be,
            _ => return Err(format!("unsupported charset '{label}'")),
        })
    }

    /// Encodes text. Characters the charset cannot hold become `?`, except that ISO-8859-1 first
    /// tries the best-fit base letter (`ĕ` → `e`), which is what Cyclr's documented example shows.
    pub fn encode(self, text: &str) -> Vec<u8> {
        match self {
            Charset::Utf8 => text.as_bytes().to_vec(),
            Charset::Ascii => {
                text.chars().map(|c| if c.is_ascii() { c as u8 } else { b'?' }).collect()
            }
            Charset::Latin1 => text.chars().map(latin1_best_fit).collect(),
            Charset::Utf7 => utf7_encode(text).into_bytes(),
            Charset::Utf16Le => text.encode_utf16().flat_map(u16::to_le_bytes).collect(),
            Charset::Utf16Be => text.encode_utf16().flat_map(u16::to_be_bytes).collect(),
            Charset::Utf32Le => text.chars().flat_map(|c| (c as u32).to_le_bytes()).collect(),
            Charset::Utf32Be => text.chars().flat_map(|c| (c as u32).to_be_bytes()).collect(),
        }
    }

    /// Decodes bytes; malformed input becomes U+FFFD (ASCII: bytes above 0x7F become `?`).
    pub fn decode(self, bytes: &[u8]) -> String {
        match self {
            Charset::Utf8 => String::from_utf8_lossy(bytes).into_owned(),
            Charset::Ascii => {
                bytes.iter().map(|b| if b.is_ascii() { *b as char } else { '?' }).collect()
            }
            Charset::Latin1 => bytes.iter().map(|b| *b as char).collect(),
            Charset::Utf7 => utf7_decode(bytes),
            Charset::Utf16Le | Charset::Utf16Be => {
                let units = bytes.chunks(2).map(|pair| match (self, pair) {
                    (Charset::Utf16Le, [a, b]) => u16::from_le_bytes([*a, *b]),
                    (_, [a, b]) => u16::from_be_bytes([*a, *b]),
                    _ => 0xFFFD,
                });
                char::decode_utf16(units)
                    .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
                    .collect()
            }
            Charset::Utf32Le | Charset::Utf32Be => bytes
                .chunks(4)
                .map(|quad| {
                    let value = match (self, <[u8; 4]>::try_from(quad)) {
                        (Charset::Utf32Le, Ok(q)) => u32::from_le_bytes(q),
                        (_, Ok(q)) => u32::from_be_bytes(q),
                        _ => 0xFFFD,
                    };
                    char::from_u32(value).unwrap_or(char::REPLACEMENT_CHARACTER)
                })
                .collect(),
        }
    }
}

fn latin1_best_fit(c: char) -> u8 {
    if (c as u32) <= 0xFF {
        return c as u8;
    }
    match c.nfd().next() {
        Some(base) if (base as u32) <= 0xFF && base != c => base as u8,
        _ => b'?',
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// RFC 2152 "Set D" plus the white space that is written directly (as .NET does by default).
fn utf7_direct(c: char) -> bool {
    c.is_ascii_alphanumeric() || "'(),-./:? \t\r\n".contains(c)
}

fn utf7_encode(text: &str) -> String {
    let mut out = String::new();
    let mut run: Vec<u16> = Vec::new();
    let flush = |run: &mut Vec<u16>, out: &mut String| {
        if run.is_empty() {
            return;
        }
        let bytes: Vec<u8> = run.iter().flat_map(|u| u.to_be_bytes()).collect();
        out.push('+');
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
                << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out.push('-');
        run.clear();
    };
    for c in text.chars() {
        if c == '+' {
            flush(&mut run, &mut out);
            out.push_str("+-");
        } else if utf7_direct(c) {
            flush(&mut run, &mut out);
            out.push(c);
        } else {
            let mut buf = [0u16; 2];
            run.extend_from_slice(c.encode_utf16(&mut buf));
        }
    }
    flush(&mut run, &mut out);
    out
}

fn utf7_decode(bytes: &[u8]) -> String {
    let mut units: Vec<u16> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        if b != b'+' {
            units.push(if b.is_ascii() { u16::from(b) } else { 0xFFFD });
            continue;
        }
        if bytes.get(i) == Some(&b'-') {
            units.push(u16::from(b'+'));
            i += 1;
            continue;
        }
        let (mut acc, mut nbits) = (0u32, 0u32);
        while let Some(v) = bytes.get(i).and_then(|c| B64.iter().position(|x| x == c)) {
            acc = (acc << 6) | v as u32;
            nbits += 6;
            if nbits >= 16 {
                nbits -= 16;
                units.push((acc >> nbits) as u16);
                acc &= (1 << nbits) - 1;
            }
            i += 1;
        }
        if bytes.get(i) == Some(&b'-') {
            i += 1;
        }
    }
    char::decode_utf16(units).map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    fn btoa(text: &str, label: Option<&str>) -> String {
        let bytes = Charset::from_label(label).unwrap().encode(text);
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    #[test]
    fn cyclr_documented_examples() {
        assert_eq!(btoa("Hĕllō Wōrld", None), "SMSVbGzFjSBXxY1ybGQ=");
        assert_eq!(btoa("Hĕllō Wōrld", Some("ascii")), "SD9sbD8gVz9ybGQ=");
        assert_eq!(btoa("Hĕllō Wōrld", Some("iso-8859-1")), "SGVsbG8gV29ybGQ=");
    }

    #[test]
    fn labels() {
        assert_eq!(Charset::from_label(Some("UTF-16")).unwrap(), Charset::Utf16Le);
        assert_eq!(Charset::from_label(Some("utf_16be")).unwrap(), Charset::Utf16Be);
        assert_eq!(Charset::from_label(Some("UTF-32")).unwrap(), Charset::Utf32Le);
        assert_eq!(Charset::from_label(Some("Latin1")).unwrap(), Charset::Latin1);
        assert!(Charset::from_label(Some("ebcdic")).is_err());
    }

    #[test]
    fn wide_encodings() {
        assert_eq!(Charset::Utf16Le.encode("Hé"), vec![0x48, 0, 0xE9, 0]);
        assert_eq!(Charset::Utf16Be.encode("Hé"), vec![0, 0x48, 0, 0xE9]);
        assert_eq!(Charset::Utf32Be.encode("😀"), vec![0, 1, 0xF6, 0]);
        for cs in [
            Charset::Utf7,
            Charset::Utf8,
            Charset::Utf16Le,
            Charset::Utf16Be,
            Charset::Utf32Le,
            Charset::Utf32Be,
        ] {
            let text = "Hĕllō + Wōrld 😀 a~b";
            assert_eq!(cs.decode(&cs.encode(text)), text, "{cs:?}");
        }
    }

    #[test]
    fn utf7_matches_rfc_2152_examples() {
        // RFC 2152 section "Examples": "Hi Mom -☺-!" with '!' optional-direct encoded here.
        assert_eq!(utf7_encode("A≢Α."), "A+ImIDkQ-.");
        assert_eq!(utf7_encode("1 + 1"), "1 +- 1");
        assert_eq!(utf7_decode(b"Hi Mom -+Jjo--!"), "Hi Mom -☺-!");
        assert_eq!(utf7_decode("+ZeVnLIqe-".as_bytes()), "日本語");
    }

    #[test]
    fn ascii_and_latin1_decode() {
        assert_eq!(Charset::Ascii.decode(&[0x48, 0xE9]), "H?");
        assert_eq!(Charset::Latin1.decode(&[0x48, 0xE9]), "Hé");
    }
}
