//! Tar entry path validation and normalisation.
//!
//! Invariant: a path stored in a package index names the same file, inside
//! the package, on every client that writes it out — POSIX or Windows. So a
//! path is refused when it is absolute, contains NUL, or has a component that
//! is `..` or that Windows would turn into something else: a component ending
//! in dots or spaces (Windows strips them, so `.. ` or `. .` become `..`/`.`
//! and `package.json.` becomes `package.json`), a colon (a drive letter like
//! `C:`, or an NTFS stream such as `package.json::$DATA`, which *is*
//! `package.json`), or a reserved device name (`CON`, `NUL`, `COM1.js`, ...).
//! Backslashes are separators on Windows, so they are normalised to `/` here:
//! `lib\a.js` is stored as `lib/a.js`, the file Windows would write, and a
//! later duplicate replaces it consistently everywhere.
//!
//! Refusing (rather than renaming) keeps the stored file set honest: a renamed
//! file would no longer be found under the name the package's code uses.

/// Device names Windows resolves in any directory, with or without an
/// extension (`nul.txt` is the device on Windows 10). Compared
/// case-insensitively against the part before the first dot.
const RESERVED_DEVICE_NAMES: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$", "COM0", "COM1", "COM2", "COM3", "COM4",
    "COM5", "COM6", "COM7", "COM8", "COM9", "COM¹", "COM²", "COM³", "LPT0", "LPT1", "LPT2", "LPT3",
    "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9", "LPT¹", "LPT²", "LPT³",
];

/// Validate an archive path and strip its first component (the package
/// folder, whatever its name); a path with a single component is kept, as
/// pnpm does. The result may be empty (the package folder itself).
pub(crate) fn normalize_entry_path(raw: &str) -> Result<String, &'static str> {
    if raw.contains('\0') {
        return Err("path contains NUL");
    }
    if raw.starts_with('/') || raw.starts_with('\\') || has_drive_prefix(raw) {
        return Err("absolute path");
    }
    let components: Vec<&str> = raw.split(['/', '\\']).collect();
    if components.contains(&"..") {
        return Err("path contains a `..` component");
    }
    // The first component is the package folder and is dropped unread; a
    // single-component path is the file itself.
    let rest = if components.len() > 1 {
        &components[1..]
    } else {
        &components[..]
    };
    let mut kept = Vec::with_capacity(rest.len());
    for &c in rest {
        if c.is_empty() || c == "." {
            continue;
        }
        check_component(c)?;
        kept.push(c);
    }
    Ok(kept.join("/"))
}

/// One component that is neither empty nor `.`: refuse what Windows would
/// read as a different name.
fn check_component(c: &str) -> Result<(), &'static str> {
    if c.contains(':') {
        return Err("colon in a path component (drive letter or NTFS stream on Windows)");
    }
    if c.ends_with(['.', ' ']) {
        if c.trim_end_matches(['.', ' ']).is_empty() {
            return Err("component of only dots and spaces (Windows reads it as `.` or `..`)");
        }
        return Err("component ends in a dot or space (Windows strips it: another name)");
    }
    if is_reserved_device(c) {
        return Err("reserved Windows device name");
    }
    Ok(())
}

fn is_reserved_device(c: &str) -> bool {
    let stem = c.split('.').next().unwrap_or(c).trim_end_matches(' ');
    RESERVED_DEVICE_NAMES
        .iter()
        .any(|name| stem.eq_ignore_ascii_case(name))
}

pub(crate) fn has_drive_prefix(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

/// `..` as Windows may read it once trailing dots and spaces are stripped:
/// any component of only dots and spaces other than `.` counts as climbing
/// (conservative: such a link is refused, never followed).
fn climbs(comp: &str) -> bool {
    comp != "." && !comp.is_empty() && comp.trim_end_matches(['.', ' ']).is_empty()
}

/// Resolve link `target` lexically from the directory `base`; `true` when it
/// is absolute or climbs above the package root.
fn resolves_outside(mut stack: Vec<String>, target: &str) -> bool {
    if target.starts_with('/') || target.starts_with('\\') || has_drive_prefix(target) {
        return true;
    }
    if target.contains('\0') {
        return true;
    }
    for comp in target.split(['/', '\\']) {
        if climbs(comp) {
            if stack.pop().is_none() {
                return true;
            }
        } else if !(comp.is_empty() || comp == ".") {
            stack.push(comp.to_owned());
        }
    }
    false
}

/// A symlink target is relative to the link's own directory.
pub(crate) fn symlink_escapes(link_path: &str, target: &str) -> bool {
    let mut base: Vec<String> = link_path
        .split('/')
        .filter(|c| !c.is_empty())
        .map(str::to_owned)
        .collect();
    base.pop();
    resolves_outside(base, target)
}

/// A hardlink target is an archive path, so it carries the package folder.
pub(crate) fn hardlink_escapes(target: &str) -> bool {
    if target.starts_with('/') || target.starts_with('\\') || has_drive_prefix(target) {
        return true;
    }
    let rest = match target.find(['/', '\\']) {
        Some(at) => &target[at + 1..],
        None => target,
    };
    resolves_outside(Vec::new(), rest)
}

#[cfg(test)]
mod tests;
