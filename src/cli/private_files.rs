//! Files the CLI keeps for the user alone: upload state (which holds an upload URL, a capability to write,
//! finish or cancel that upload) and partial downloads. Neither may be readable by others, and neither
//! may be a link someone else planted to make the CLI write elsewhere.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use super::remote::{CliError, CliResult};

/// Creates `dir` (and missing parents) readable by the user only, and narrows it to that if it existed.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let metadata = std::fs::symlink_metadata(dir)?;
    if metadata.permissions().mode() & 0o077 != 0 && metadata.uid() == rustix::process::getuid().as_raw() {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Writes `path` whole or not at all (a crash leaves the old file or none, never half of one), mode 0600.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let partial = path.with_extension("partial");
    match std::fs::remove_file(&partial) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let mut file =
        OpenOptions::new().write(true).create_new(true).mode(0o600).custom_flags(libc::O_NOFOLLOW).open(&partial)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(&partial, path)
}

/// Opens (creating it, mode 0600) the partial download `path` for appending: never through a symbolic
/// link, and only if it is a regular file of the user's with no other name.
pub fn open_partial(path: &Path) -> CliResult<File> {
    let opened = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let refuse = |why: &str| {
        CliError::failure(format!("refusing to write to {}: {why}", path.display()))
            .with_hint("remove it (it is not a partial download this command made) and run the command again")
    };
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(refuse("it is a symbolic link")),
        Err(e) => return Err(e.into()),
    };
    let metadata = file.metadata()?;
    if !metadata.file_type().is_file() {
        return Err(refuse("it is not a regular file"));
    }
    if metadata.uid() != rustix::process::getuid().as_raw() {
        return Err(refuse("it belongs to another user"));
    }
    if metadata.nlink() != 1 {
        return Err(refuse("it has other names (hard links)"));
    }
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_the_user_s_alone_and_links_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("cache/filegate/uploads");
        private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700, "narrowed");

        let state = dir.join("x.json");
        write_private(&state, b"{}").unwrap();
        assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&state).unwrap(), b"{}");

        let victim = tmp.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let planted = tmp.path().join("out.bin.part");
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let err = open_partial(&planted).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        let linked = tmp.path().join("hard.part");
        std::fs::hard_link(&victim, &linked).unwrap();
        assert!(open_partial(&linked).unwrap_err().to_string().contains("hard links"));
        std::fs::create_dir(tmp.path().join("dir.part")).unwrap();
        assert!(open_partial(&tmp.path().join("dir.part")).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious", "nothing was written through a link");

        let fresh = open_partial(&tmp.path().join("new.part")).unwrap();
        assert_eq!(fresh.metadata().unwrap().permissions().mode() & 0o777, 0o600);
    }
}
