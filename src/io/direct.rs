//! A writer that sends a large output file around the page cache.
//!
//! A store's big files are written once and read, if ever, by a later command: a 2 mm
//! run's statistics (35 MB), the group's sums (160 MB), each 64-atom map (~19 MB gzipped).
//! Written the ordinary way, every byte is first copied into a page-cache page the kernel
//! must find and clear, which is costly where free memory has gone back to the host (a
//! VM's free page reporting): 500 MB through `dd` took 1.35 s of system time buffered and
//! 0.03 s with `O_DIRECT` on this project's machines (0.2 s of wall time either way, as
//! the outputs are synced before their rename).
//!
//! So a file that grows past one [`CHUNK`] continues with `O_DIRECT` (Linux), in whole
//! chunks from an aligned buffer: offsets, lengths and the buffer's address are multiples
//! of [`ALIGN`], which covers the block sizes of disks (512 and 4,096 bytes). A smaller
//! file, the tail under a chunk, and everything after a flush that ends off a block are
//! written the ordinary way, so a file's bytes and length are exactly what was written.
//! Where the file system refuses `O_DIRECT` (`EINVAL`: tmpfs before Linux 6.6, some FUSE
//! file systems), the file is written the ordinary way from there on.

use std::fs::File;
use std::io::{self, Write};

/// Bytes gathered before a write (and the size of every direct write).
pub const CHUNK: usize = 1 << 20;
/// The alignment of a direct write's buffer, offset and length.
pub const ALIGN: usize = 4096;

/// How the file is being written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing written yet: direct once a whole chunk is.
    Undecided,
    Direct,
    Buffered,
}

/// Buffers writes to `File` in [`CHUNK`]s and writes large files with `O_DIRECT` (see the
/// module's doc). Flushed when dropped (errors ignored), as `BufWriter` is.
pub struct DirectWriter {
    file: File,
    /// CHUNK + ALIGN bytes, of which `chunk_at..chunk_at + CHUNK` is aligned.
    buf: Vec<u8>,
    chunk_at: usize,
    filled: usize,
    mode: Mode,
}

impl DirectWriter {
    pub fn new(file: File) -> DirectWriter {
        let buf = vec![0u8; CHUNK + ALIGN];
        let chunk_at = buf.as_ptr().align_offset(ALIGN);
        DirectWriter { file, buf, chunk_at, filled: 0, mode: Mode::Undecided }
    }

    /// Whether the file's writes have gone around the page cache (for tests).
    pub fn went_direct(&self) -> bool {
        self.mode == Mode::Direct
    }

    /// Writes the buffer's `filled` bytes: directly when they are whole blocks of a file
    /// written so far in whole blocks and `O_DIRECT` is allowed, otherwise buffered.
    fn write_out(&mut self) -> io::Result<()> {
        let whole = self.filled.is_multiple_of(ALIGN);
        if self.mode == Mode::Undecided && whole && self.filled == CHUNK {
            self.mode = if set_direct(&self.file, true) { Mode::Direct } else { Mode::Buffered };
        }
        if !whole {
            self.go_buffered()?;
        }
        let mut done = 0;
        while done < self.filled {
            let bytes = &self.buf[self.chunk_at + done..self.chunk_at + self.filled];
            match self.file.write(bytes) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    done += n;
                    // A short direct write leaves the rest off a block.
                    if !done.is_multiple_of(ALIGN) {
                        self.go_buffered()?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The file system (or the device's block size) refuses direct writes.
                Err(e) if self.mode == Mode::Direct && e.raw_os_error() == Some(libc::EINVAL) => self.go_buffered()?,
                Err(e) => return Err(e),
            }
        }
        self.filled = 0;
        Ok(())
    }

    /// From here on, ordinary writes.
    fn go_buffered(&mut self) -> io::Result<()> {
        if self.mode == Mode::Direct && !set_direct(&self.file, false) {
            return Err(io::Error::other("cannot turn O_DIRECT off"));
        }
        self.mode = Mode::Buffered;
        Ok(())
    }
}

impl Write for DirectWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.filled);
        let at = self.chunk_at + self.filled;
        self.buf[at..at + n].copy_from_slice(&data[..n]);
        self.filled += n;
        if self.filled == CHUNK {
            self.write_out()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.filled > 0 {
            self.write_out()?;
        }
        self.file.flush()
    }
}

impl Drop for DirectWriter {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = self.flush();
        }
    }
}

/// Sets or clears `O_DIRECT` on the file; false where that is refused or unknown.
#[cfg(target_os = "linux")]
fn set_direct(file: &File, on: bool) -> bool {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor this File owns; F_GETFL/F_SETFL touch no memory.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return false;
        }
        let flags = if on { flags | libc::O_DIRECT } else { flags & !libc::O_DIRECT };
        libc::fcntl(fd, libc::F_SETFL, flags) == 0
    }
}

#[cfg(not(target_os = "linux"))]
fn set_direct(_file: &File, on: bool) -> bool {
    !on
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Files of every size around the chunk and block boundaries, written in uneven
    /// pieces with flushes between some, read back byte for byte; the large ones go direct
    /// where the file system allows it (the test's temporary directory may not).
    #[test]
    fn files_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let sizes = [0, 1, ALIGN - 1, ALIGN, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK, 3 * CHUNK + ALIGN + 7];
        for (i, &size) in sizes.iter().enumerate() {
            for flush_every in [None, Some(3 * ALIGN), Some(CHUNK + 5)] {
                let data: Vec<u8> = (0..size).map(|k| (k * 7 + k / 4099) as u8).collect();
                let path = dir.path().join(format!("f{i}-{flush_every:?}"));
                let mut w = DirectWriter::new(File::create(&path).unwrap());
                let (mut at, mut piece, mut since_flush) = (0, 1, 0);
                while at < size {
                    let n = piece.min(size - at);
                    w.write_all(&data[at..at + n]).unwrap();
                    (at, since_flush) = (at + n, since_flush + n);
                    if flush_every.is_some_and(|f| since_flush >= f) {
                        w.flush().unwrap();
                        since_flush = 0;
                    }
                    piece = piece * 5 % 300_007 + 1;
                }
                w.flush().unwrap();
                drop(w);
                assert!(std::fs::read(&path).unwrap() == data, "{size} bytes, flushes every {flush_every:?}");
            }
        }
    }

    /// A file of a few chunks goes direct wherever the file system lets a file be
    /// opened with `O_DIRECT` (asked independently, by opening one so).
    #[cfg(target_os = "linux")]
    #[test]
    fn large_files_go_direct_where_allowed() {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().unwrap();
        let allowed = std::fs::OpenOptions::new().write(true).create(true).custom_flags(libc::O_DIRECT).open(dir.path().join("probe")).is_ok();
        let path = dir.path().join("big");
        let mut w = DirectWriter::new(File::create(&path).unwrap());
        let data: Vec<u8> = (0..3 * CHUNK + 11).map(|k| (k % 251) as u8).collect();
        w.write_all(&data).unwrap();
        assert_eq!(w.went_direct(), allowed, "O_DIRECT allowed: {allowed}");
        drop(w);
        assert!(std::fs::read(&path).unwrap() == data);
    }
}
