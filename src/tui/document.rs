//! The text being explained: where it came from, its units, and the edits made in the TUI. The
//! file on disk is written only by [`Document::save`], which the user asks for explicitly.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::segment::{Segment, Unit, segments};

/// Where the text was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Stdin,
    /// Text given directly (tests, benchmarks).
    Memory(String),
}

/// What identifies a file's version on disk, to notice it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

#[derive(Debug, Clone)]
pub struct Document {
    pub source: Source,
    pub text: String,
    pub unit: Unit,
    pub units: Vec<Segment>,
    /// Edits not yet saved.
    pub modified: bool,
    /// The version on disk that `text` was read from or saved to.
    pub stamp: Option<FileStamp>,
    /// Counts changes of `text`, so a split computed in the background for an older text is
    /// thrown away.
    pub revision: u64,
    /// False while only a prefix of a large text is split into units (the rest follows from
    /// [`Document::split_in_background`]).
    pub units_complete: bool,
    /// The file started with a UTF-8 byte order mark. `text` never holds it (the model and the
    /// byte offsets must not see it), so [`Document::save`] writes it back in front.
    pub bom: bool,
    /// The file changed on disk while edits made here were kept: saving would overwrite that
    /// change, so the UI asks first.
    pub changed_outside: bool,
}

/// Texts longer than this open with only their first paragraphs split; the whole text is split
/// on a background thread (a 10 MB file takes about a second to split into sentences).
const SPLIT_AT_ONCE_BYTES: usize = 256 * 1024;

/// Bytes looked at to tell text from binary data.
const BINARY_SNIFF_BYTES: usize = 8192;

impl Document {
    /// Opens `FILE`, or stdin for `-`. Missing, unreadable, binary and non-UTF-8 inputs are
    /// errors that name the file and say what to do.
    pub fn open(argument: &str, unit: Unit) -> Result<Self> {
        let source = if argument == "-" {
            Source::Stdin
        } else {
            Source::File(PathBuf::from(argument))
        };
        let (text, bom) = read_source(&source)?;
        let prefix_end = (text.len() > SPLIT_AT_ONCE_BYTES)
            .then(|| text[..SPLIT_AT_ONCE_BYTES].rfind("\n\n"))
            .flatten();
        let mut document = match prefix_end {
            // Units never cross a blank line, so the prefix's units are the whole text's first ones.
            Some(end) => {
                let units = segments(&text[..end], unit);
                Document::with_units(source, text, unit, units, false)
            }
            None => Document::from_text(source, text, unit),
        };
        document.stamp = document.current_stamp();
        document.bom = bom;
        Ok(document)
    }

    pub fn from_text(source: Source, text: String, unit: Unit) -> Self {
        let units = segments(&text, unit);
        Document::with_units(source, text, unit, units, true)
    }

    /// A freshly loaded, unmodified document whose first `units` are known (all of them when
    /// `units_complete`).
    fn with_units(
        source: Source,
        text: String,
        unit: Unit,
        units: Vec<Segment>,
        units_complete: bool,
    ) -> Self {
        Document {
            source,
            text,
            unit,
            units,
            modified: false,
            stamp: None,
            revision: 0,
            units_complete,
            bom: false,
            changed_outside: false,
        }
    }

    /// A short name for titles and export file names.
    pub fn name(&self) -> String {
        match &self.source {
            Source::File(path) => path.display().to_string(),
            Source::Stdin => "<stdin>".into(),
            Source::Memory(name) => name.clone(),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        match &self.source {
            Source::File(path) => Some(path),
            _ => None,
        }
    }

    /// Splits the whole text on a thread when only a prefix is split; the receiver gets the
    /// revision it was computed for and the units (apply them with [`Document::accept_units`]).
    pub fn split_in_background(&self) -> Option<std::sync::mpsc::Receiver<(u64, Vec<Segment>)>> {
        if self.units_complete {
            return None;
        }
        let (sender, receiver) = std::sync::mpsc::channel();
        let (text, unit, revision) = (self.text.clone(), self.unit, self.revision);
        std::thread::Builder::new()
            .name("tokenlens-split".into())
            .spawn(move || {
                let _ = sender.send((revision, segments(&text, unit)));
            })
            .ok()?;
        Some(receiver)
    }

    /// Takes the units of a background split, unless the text changed meanwhile.
    pub fn accept_units(&mut self, revision: u64, units: Vec<Segment>) -> bool {
        if revision != self.revision || self.units_complete {
            return false;
        }
        self.units = units;
        self.units_complete = true;
        true
    }

    pub fn unit_text(&self, index: usize) -> &str {
        self.units.get(index).map_or("", |s| s.text(&self.text))
    }

    /// Whether a blank line separates unit `index` from the one before it (drawn as an empty row).
    pub fn paragraph_break_before(&self, index: usize) -> bool {
        if index == 0 || index >= self.units.len() {
            return false;
        }
        let gap = &self.text[self.units[index - 1].end..self.units[index].start];
        gap.matches('\n').count() >= 2
    }

    /// The unit holding byte `offset` of the document (or the next one after it).
    pub fn unit_at_byte(&self, offset: usize) -> Option<usize> {
        if self.units.is_empty() {
            return None;
        }
        let index = self.units.partition_point(|s| s.end <= offset);
        Some(index.min(self.units.len() - 1))
    }

    /// Replaces unit `index` with `new_text` in memory and splits the document again.
    pub fn replace_unit(&mut self, index: usize, new_text: &str) {
        let Some(segment) = self.units.get(index).copied() else {
            return;
        };
        if segment.text(&self.text) == new_text {
            return;
        }
        self.text
            .replace_range(segment.start..segment.end, new_text);
        self.units = segments(&self.text, self.unit);
        self.modified = true;
    }

    pub fn set_unit(&mut self, unit: Unit) {
        self.unit = unit;
        self.units = segments(&self.text, unit);
        self.units_complete = true;
        self.revision += 1;
    }

    /// Reads the source again, dropping unsaved edits.
    pub fn reload(&mut self) -> Result<()> {
        let (text, bom) = read_source(&self.source)?;
        self.units = segments(&text, self.unit);
        self.text = text;
        self.bom = bom;
        self.units_complete = true;
        self.revision += 1;
        self.modified = false;
        self.changed_outside = false;
        self.stamp = self.current_stamp();
        Ok(())
    }

    /// Writes the edited text back to the file it came from.
    pub fn save(&mut self) -> Result<PathBuf> {
        let Some(path) = self.path().map(Path::to_path_buf) else {
            return Err(Error::Usage(
                "the text came from stdin, so there is no file to save to; export it with `e`"
                    .into(),
            ));
        };
        let bom: &[u8] = if self.bom { UTF8_BOM } else { b"" };
        std::fs::write(&path, [bom, self.text.as_bytes()].concat()).map_err(|source| {
            Error::Output {
                path: path.clone(),
                source,
            }
        })?;
        self.modified = false;
        self.changed_outside = false;
        self.stamp = self.current_stamp();
        Ok(path)
    }

    /// The file's version on disk now (None for stdin or an unreadable file).
    pub fn current_stamp(&self) -> Option<FileStamp> {
        let metadata = std::fs::metadata(self.path()?).ok()?;
        Some(FileStamp {
            modified: metadata.modified().ok(),
            len: metadata.len(),
        })
    }

    /// Whether the file on disk differs from the version this document was read from.
    pub fn changed_on_disk(&self) -> bool {
        self.path().is_some() && self.current_stamp() != self.stamp
    }
}

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The text of `source` and whether it began with a byte order mark.
fn read_source(source: &Source) -> Result<(String, bool)> {
    let (name, bytes) = match source {
        Source::File(path) => {
            if path.is_dir() {
                return Err(Error::Usage(format!(
                    "{} is a directory; give a text file (or - for stdin)",
                    path.display()
                )));
            }
            // A missing or unreadable input is a usage error (exit 2), not a model failure.
            let bytes = std::fs::read(path).map_err(|source| {
                Error::Usage(format!("could not read {}: {source}", path.display()))
            })?;
            (path.display().to_string(), bytes)
        }
        Source::Stdin => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .lock()
                .read_to_end(&mut bytes)
                .map_err(|source| Error::Io {
                    path: "<stdin>".into(),
                    source,
                })?;
            ("<stdin>".to_string(), bytes)
        }
        Source::Memory(name) => {
            return Err(Error::Usage(format!("{name} has no source to read again")));
        }
    };
    let bom = bytes.starts_with(UTF8_BOM);
    Ok((decode_text(&name, bytes)?, bom))
}

/// The text of `bytes`, or an error for binary data (a NUL byte near the start, as git and grep
/// judge it) and for text that is not UTF-8.
pub fn decode_text(name: &str, bytes: Vec<u8>) -> Result<String> {
    let sniffed = &bytes[..bytes.len().min(BINARY_SNIFF_BYTES)];
    if let Some(offset) = sniffed.iter().position(|&b| b == 0) {
        return Err(Error::Usage(format!(
            "{name} looks like a binary file (NUL byte at offset {offset}); tokenlens tui reads UTF-8 text"
        )));
    }
    let bytes = match bytes.strip_prefix(UTF8_BOM) {
        Some(rest) => rest.to_vec(),
        None => bytes,
    };
    String::from_utf8(bytes).map_err(|e| {
        Error::Usage(format!(
            "{name} is not valid UTF-8 (invalid byte at offset {}); convert it first, e.g. with iconv -t UTF-8",
            e.utf8_error().valid_up_to()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_and_non_utf8_inputs_are_refused_with_the_reason() {
        let binary = decode_text("x.bin", b"PK\x03\x04\x00\x00".to_vec()).unwrap_err();
        assert!(
            binary
                .to_string()
                .contains("binary file (NUL byte at offset 4)"),
            "{binary}"
        );
        let latin1 = decode_text("x.txt", b"caf\xe9".to_vec()).unwrap_err();
        assert!(latin1.to_string().contains("not valid UTF-8"), "{latin1}");
        assert_eq!(decode_text("x", b"\xEF\xBB\xBFhi".to_vec()).unwrap(), "hi");
    }

    #[test]
    fn large_texts_open_with_a_prefix_and_finish_in_the_background() {
        let paragraph = "One sentence here. Another one there.\n\n";
        let text = paragraph.repeat(2 * SPLIT_AT_ONCE_BYTES / paragraph.len());
        let path = std::env::temp_dir().join(format!("tokenlens-large-{}.txt", std::process::id()));
        std::fs::write(&path, &text).unwrap();
        let mut document = Document::open(path.to_str().unwrap(), Unit::Sentence).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(!document.units_complete);
        let prefix_units = document.units.clone();
        let (revision, units) = document.split_in_background().unwrap().recv().unwrap();
        assert_eq!(
            units[..prefix_units.len()],
            prefix_units[..],
            "the prefix split agrees"
        );
        assert!(document.accept_units(revision, units));
        assert_eq!(document.units, segments(&text, Unit::Sentence));
        assert!(!document.accept_units(revision, Vec::new()), "only once");
    }

    #[test]
    fn missing_file_names_the_path() {
        let error = Document::open("/no/such/file.txt", Unit::Sentence).unwrap_err();
        assert!(error.to_string().contains("/no/such/file.txt"), "{error}");
    }

    #[test]
    fn edits_stay_in_memory_and_resegment() {
        let text = "Good film. Bad end.\n\nNext paragraph.";
        let mut document =
            Document::from_text(Source::Memory("t".into()), text.into(), Unit::Sentence);
        assert_eq!(document.units.len(), 3);
        assert!(document.paragraph_break_before(2));
        assert!(!document.paragraph_break_before(1));
        document.replace_unit(1, "Bad end. Sad.");
        assert!(document.modified);
        assert_eq!(document.units.len(), 4);
        assert_eq!(document.unit_text(2), "Sad.");
        assert_eq!(document.unit_at_byte(0), Some(0));
        assert!(document.save().is_err(), "memory documents have no file");
    }
}
