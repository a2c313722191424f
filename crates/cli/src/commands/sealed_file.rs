//! Exports that hold credentials are age files (armored): encrypted to a passphrase (scrypt)
//! or to X25519 recipients (`age1…`), written and read as streams.

use std::io::{BufRead, BufReader, IsTerminal as _, Read, Write};
use std::path::Path;
use std::str::FromStr as _;

use age::armor::{ArmoredReader, ArmoredWriter, Format};
use age::secrecy::SecretString;
use anyhow::{Context, bail};

/// What an export is encrypted to.
pub enum Seal {
    /// A passphrase (age's scrypt recipient).
    Passphrase(SecretString),
    /// Public keys; any of their identities decrypts.
    Recipients(Vec<age::x25519::Recipient>),
}

impl Seal {
    /// From `--recipient` values, else `--passphrase-file`, else a passphrase typed twice.
    pub fn choose(recipients: &[String], passphrase_file: Option<&Path>) -> anyhow::Result<Self> {
        if !recipients.is_empty() {
            let keys = recipients
                .iter()
                .map(|r| {
                    age::x25519::Recipient::from_str(r.trim())
                        .map_err(|e| anyhow::anyhow!("--recipient {r}: {e}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            return Ok(Self::Recipients(keys));
        }
        let passphrase = match passphrase_file {
            Some(path) => passphrase_from_file(path)?,
            None => {
                let first = prompt("Passphrase to encrypt the export with: ")?;
                let again = prompt("The same passphrase again: ")?;
                if age::secrecy::ExposeSecret::expose_secret(&first)
                    != age::secrecy::ExposeSecret::expose_secret(&again)
                {
                    bail!("the two passphrases differ");
                }
                first
            }
        };
        Ok(Self::Passphrase(passphrase))
    }
}

/// A writer that encrypts into an armored age file; [`SealedWriter::finish`] writes the last
/// chunk and the armor's end line, without which the file does not decrypt.
pub struct SealedWriter<W: Write> {
    inner: age::stream::StreamWriter<ArmoredWriter<W>>,
}

impl<W: Write> SealedWriter<W> {
    /// Starts the file (its header) on `output`.
    pub fn new(output: W, seal: Seal) -> anyhow::Result<Self> {
        let encryptor = match seal {
            Seal::Passphrase(passphrase) => age::Encryptor::with_user_passphrase(passphrase),
            Seal::Recipients(keys) => {
                age::Encryptor::with_recipients(keys.iter().map(|k| k as &dyn age::Recipient))
                    .context("cannot encrypt to these recipients")?
            }
        };
        let armored = ArmoredWriter::wrap_output(output, Format::AsciiArmor)?;
        Ok(Self { inner: encryptor.wrap_output(armored)? })
    }

    /// Ends the file and returns the output.
    pub fn finish(self) -> anyhow::Result<W> {
        Ok(self.inner.finish()?.finish()?)
    }
}

impl<W: Write> Write for SealedWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Whether `head` (the first bytes of a file) starts an age file, armored or binary.
pub fn is_age(head: &[u8]) -> bool {
    head.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
        || head.starts_with(b"age-encryption.org/")
}

/// How an encrypted import is opened.
pub struct Keys<'a> {
    /// An identity file, for a file encrypted to recipients.
    pub identity: Option<&'a Path>,
    /// A passphrase file, for a passphrase-encrypted file (else the terminal is asked).
    pub passphrase_file: Option<&'a Path>,
}

/// The plaintext of an age file read from `input`, as a stream. `ask` runs the terminal
/// prompt (so a progress bar can step aside for it).
pub fn open<R: Read + Send + 'static>(
    input: R,
    keys: &Keys<'_>,
    ask: impl FnOnce(&str) -> anyhow::Result<SecretString>,
) -> anyhow::Result<Box<dyn BufRead + Send>> {
    let decryptor = age::Decryptor::new(ArmoredReader::new(input))
        .context("the file looks encrypted (age) but its header does not read")?;
    let reader = if decryptor.is_scrypt() {
        let passphrase = match keys.passphrase_file {
            Some(path) => passphrase_from_file(path)?,
            None => ask("Passphrase of the encrypted file: ")?,
        };
        let identity = age::scrypt::Identity::new(passphrase);
        decryptor
            .decrypt(std::iter::once(&identity as &dyn age::Identity))
            .context("cannot decrypt the file: wrong passphrase?")?
    } else {
        let path = keys.identity.context(
            "the file is encrypted to age recipients: pass --identity with a matching key",
        )?;
        let identities = age::IdentityFile::from_file(path.display().to_string())
            .with_context(|| format!("cannot read the identity file {}", path.display()))?
            .into_identities()
            .context("the identity file holds no usable key")?;
        decryptor
            .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .context("cannot decrypt the file with the identity given")?
    };
    Ok(Box::new(BufReader::new(reader)))
}

/// The first line of `path`, without its line break.
fn passphrase_from_file(path: &Path) -> anyhow::Result<SecretString> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the passphrase file {}", path.display()))?,
    );
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        bail!("the passphrase file {} is empty", path.display());
    }
    Ok(SecretString::from(line.to_string()))
}

/// Asks for a passphrase on the terminal (not echoed).
pub fn prompt(text: &str) -> anyhow::Result<SecretString> {
    if !std::io::stdin().is_terminal() && !std::io::stderr().is_terminal() {
        bail!("no terminal to ask for the passphrase on: pass --passphrase-file");
    }
    let passphrase = rpassword::prompt_password(text).context("cannot read from the terminal")?;
    if passphrase.is_empty() {
        bail!("an empty passphrase");
    }
    Ok(SecretString::from(passphrase))
}
