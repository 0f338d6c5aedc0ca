//! The byte stream under the text readers: the file, counted into a progress bar as it is read,
//! and gunzipped when the name ends in `.gz`.
//!
//! The bar counts bytes of the file on disk (compressed bytes for `.gz`), so its length is
//! known before reading and it moves evenly whatever the records look like.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

/// Read-buffer size: large enough that a bar update and a system call per buffer cost nothing
/// per record.
const BUFFER_BYTES: usize = 256 << 10;

/// A bar over the file's bytes on stderr, drawn only when asked for and stderr is a terminal.
pub(super) fn file_bar(path: &Path, file: &File, enabled: bool) -> ProgressBar {
    let len = file.metadata().map_or(0, |m| m.len());
    bar(
        path,
        len,
        enabled,
        "{msg} [{elapsed_precise}] {wide_bar} {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {eta})",
    )
}

/// A bar over `len` units of the file (rows of a Parquet file), with `template`'s counters.
pub(super) fn bar(path: &Path, len: u64, enabled: bool, template: &str) -> ProgressBar {
    use std::io::IsTerminal;
    if !(enabled && std::io::stderr().is_terminal()) {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    let name = path.file_name().unwrap_or(path.as_os_str());
    bar.set_message(format!("reading {}", name.to_string_lossy()));
    bar
}

/// The file's text as a buffered stream: counted into `bar` as read, gunzipped for `.gz`
/// (several concatenated gzip members, as `cat a.gz b.gz` makes, read as one stream).
pub(super) fn text_input(file: File, gzip: bool, bar: ProgressBar) -> Box<dyn BufRead> {
    let counted = Counted { inner: file, bar };
    if gzip {
        let raw = BufReader::with_capacity(BUFFER_BYTES, counted);
        Box::new(BufReader::with_capacity(
            BUFFER_BYTES,
            flate2::bufread::MultiGzDecoder::new(raw),
        ))
    } else {
        Box::new(BufReader::with_capacity(BUFFER_BYTES, counted))
    }
}

/// A reader that moves a progress bar by the bytes it reads.
struct Counted<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}
