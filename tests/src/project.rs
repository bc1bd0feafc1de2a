//! `Project`: a throwaway npm project plus isolated client state, and the
//! real clients (npm 11, pnpm 11.5.2, pnpm 12, yarn 1 and 4, bun, deno,
//! Node 22) run inside it.
//!
//! Invariant guarded: a client run sees only this project's config. The
//! environment is cleared; HOME, the XDG dirs, npm's global/user config, npm's
//! cache and pnpm's store/cache all point into the project's temp dir, so
//! neither the developer's config (registries, tokens, proxies) nor state left
//! by another test can influence the result. Every run is time-bounded.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tempfile::TempDir;

use crate::deps::Deps;
use crate::proc::{run, Output};

mod tty;

/// Default bound on one client command.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

/// A temp project directory with its own client state.
#[derive(Debug)]
pub struct Project {
    dir: TempDir,
    timeout: Duration,
    extra_env: Vec<(String, String)>,
}

impl Project {
    /// Creates the project with `package_json` and, if given, a project-level
    /// `.npmrc`.
    #[track_caller]
    pub fn new(package_json: &serde_json::Value, npmrc: Option<&str>) -> Project {
        let dir = tempfile::Builder::new()
            .prefix("pnpr-e2e-project-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create temp dir: {e}"));
        let project = Project {
            dir,
            timeout: CLIENT_TIMEOUT,
            extra_env: Vec::new(),
        };
        for sub in ["project", "home", "npm-cache", "pnpm-store", "pnpm-cache"] {
            let path = project.dir.path().join(sub);
            std::fs::create_dir_all(&path)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        }
        // Empty files rather than absent ones, so npm does not go looking for
        // the machine-wide config next to its install.
        project.write_home_file("global-npmrc", "");
        project.write_home_file(".npmrc", "");
        let text = serde_json::to_string_pretty(package_json)
            .unwrap_or_else(|e| panic!("cannot serialize package.json: {e}"));
        project.write_file("package.json", &text);
        if let Some(npmrc) = npmrc {
            project.write_file(".npmrc", npmrc);
        }
        project
    }

    /// A project whose package.json has just these `dependencies`.
    #[track_caller]
    pub fn with_dependencies(deps: &[(&str, &str)]) -> Project {
        let deps: serde_json::Map<String, serde_json::Value> = deps
            .iter()
            .map(|(name, range)| (name.to_string(), serde_json::Value::from(*range)))
            .collect();
        Project::new(
            &serde_json::json!({
                "name": "pnpr-e2e-project",
                "version": "1.0.0",
                "private": true,
                "dependencies": deps,
            }),
            None,
        )
    }

    /// Changes the bound for subsequent client commands.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Adds an environment variable to every subsequent command (e.g.
    /// `PNPM_CONFIG_PNPR_SERVER`).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.extra_env.push((key.to_string(), value.to_string()));
    }

    /// The project directory (where package.json lives).
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("project")
    }

    /// HOME for client runs.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// npm's cache dir.
    pub fn npm_cache(&self) -> PathBuf {
        self.dir.path().join("npm-cache")
    }

    /// pnpm's store dir (both pnpm versions; they use `v11/` inside).
    pub fn pnpm_store(&self) -> PathBuf {
        self.dir.path().join("pnpm-store")
    }

    /// pnpm's cache dir (metadata cache).
    pub fn pnpm_cache(&self) -> PathBuf {
        self.dir.path().join("pnpm-cache")
    }

    /// Writes `contents` to `rel` inside the project, creating parents.
    #[track_caller]
    pub fn write_file(&self, rel: &str, contents: &str) {
        write(&self.path().join(rel), contents);
    }

    #[track_caller]
    fn write_home_file(&self, rel: &str, contents: &str) {
        write(&self.home().join(rel), contents);
    }

    /// Reads `rel` inside the project; panics if it is missing.
    #[track_caller]
    pub fn read_file(&self, rel: &str) -> String {
        let path = self.path().join(rel);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }

    /// Whether `rel` exists inside the project.
    pub fn exists(&self, rel: &str) -> bool {
        self.path().join(rel).exists()
    }

    /// Runs npm 11 in the project.
    #[track_caller]
    pub fn npm(&self, args: &[&str]) -> Output {
        let deps = Deps::get();
        let mut cmd = self.command(&deps.npm);
        cmd.args(args);
        run(&mut cmd, self.timeout)
    }

    /// Runs npm 11 under a pseudo terminal, answering each `(prompt,
    /// answer)` once the prompt is printed (`npm login`).
    #[track_caller]
    pub fn npm_answering(&self, args: &[&str], answers: &[(&str, &str)]) -> Output {
        let deps = Deps::get();
        let mut cmd = self.command(&deps.npm);
        cmd.args(args);
        tty::run_answering(&cmd, answers, self.timeout)
    }

    /// Runs pnpm 11.5.2 (on Node 22) in the project.
    #[track_caller]
    pub fn pnpm11(&self, args: &[&str]) -> Output {
        let deps = Deps::get();
        let mut cmd = self.command(&deps.node22);
        cmd.arg(&deps.pnpm11).args(args);
        run(&mut cmd, self.timeout)
    }

    /// `pnpm install` with pnpm 11.5.2 through pnpr's `/v1/install` at
    /// `pnpr_url` (also the registry), without saving the manifest.
    #[track_caller]
    pub fn pnpm11_install_through(&self, pnpr_url: &str) -> Output {
        self.pnpm11(&[
            "install",
            "--config.save=false",
            "--registry",
            pnpr_url,
            "--pnpr-server",
            pnpr_url,
        ])
    }

    /// Runs pnpm 12.21.0 (native) in the project.
    #[track_caller]
    pub fn pnpm12(&self, args: &[&str]) -> Output {
        let deps = Deps::get();
        let mut cmd = self.command(&deps.pnpm12);
        cmd.args(args);
        run(&mut cmd, self.timeout)
    }

    /// Runs the pnpm `version` installed by `tests/setup.sh` (native for
    /// pnpm 12, on Node 22 for pnpm 11) in the project.
    #[track_caller]
    pub fn pnpm_v(&self, version: &str, args: &[&str]) -> Output {
        let mut cmd = self.pnpm_command(version, args);
        run(&mut cmd, self.timeout)
    }

    /// [`Project::pnpm_v`] under a pseudo terminal, answering each
    /// `(prompt, answer)` once the prompt is printed (`pnpm login`).
    #[track_caller]
    pub fn pnpm_v_answering(
        &self,
        version: &str,
        args: &[&str],
        answers: &[(&str, &str)],
    ) -> Output {
        let cmd = self.pnpm_command(version, args);
        tty::run_answering(&cmd, answers, self.timeout)
    }

    fn pnpm_command(&self, version: &str, args: &[&str]) -> Command {
        let deps = Deps::get();
        let mut cmd = match deps.pnpm_version(version) {
            crate::deps::PnpmExe::Native(exe) => self.command(exe),
            crate::deps::PnpmExe::Js(script) => {
                let mut cmd = self.command(&deps.node22);
                cmd.arg(script);
                cmd
            }
        };
        cmd.args(args);
        cmd
    }

    /// Runs yarn 1.22.22 (on Node 22) in the project.
    #[track_caller]
    pub fn yarn1(&self, args: &[&str]) -> Output {
        let deps = Deps::get();
        let mut cmd = self.command(&deps.node22);
        // yarn 4 refuses this key, so only yarn 1 gets it.
        cmd.env("YARN_DISABLE_SELF_UPDATE_CHECK", "true");
        cmd.arg(&deps.yarn1).args(args);
        run(&mut cmd, self.timeout)
    }

    /// Runs yarn 4 (on Node 22) in the project.
    #[track_caller]
    pub fn yarn4(&self, args: &[&str]) -> Output {
        let deps = Deps::get();
        let mut cmd = self.command(&deps.node22);
        cmd.arg(&deps.yarn4).args(args);
        run(&mut cmd, self.timeout)
    }

    /// Runs yarn 4 under a pseudo terminal, answering each `(prompt,
    /// answer)` once the prompt is printed (`yarn npm login`).
    #[track_caller]
    pub fn yarn4_answering(&self, args: &[&str], answers: &[(&str, &str)]) -> Output {
        let deps = Deps::get();
        let mut cmd = self.command(&deps.node22);
        cmd.arg(&deps.yarn4).args(args);
        tty::run_answering(&cmd, answers, self.timeout)
    }

    /// Runs bun in the project.
    #[track_caller]
    pub fn bun(&self, args: &[&str]) -> Output {
        let mut cmd = self.command(&Deps::get().bun);
        cmd.args(args);
        run(&mut cmd, self.timeout)
    }

    /// Runs deno in the project.
    #[track_caller]
    pub fn deno(&self, args: &[&str]) -> Output {
        let mut cmd = self.command(&Deps::get().deno);
        cmd.args(args);
        run(&mut cmd, self.timeout)
    }

    /// Runs Node 22 with `args` in the project.
    #[track_caller]
    pub fn node(&self, args: &[&str]) -> Output {
        let deps = Deps::get();
        let mut cmd = self.command(&deps.node22);
        cmd.args(args);
        run(&mut cmd, self.timeout)
    }

    /// `node -e "require(<name>)"` in the project: proves the installed
    /// `node_modules` layout actually resolves `name`.
    #[track_caller]
    pub fn node_require(&self, name: &str) -> Output {
        // JSON string syntax is valid JS, so any name is quoted safely.
        let script = format!("require({})", serde_json::Value::from(name));
        self.node(&["-e", &script])
    }

    fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let deps = Deps::get();
        let home = self.home();
        let mut cmd = Command::new(program);
        cmd.current_dir(self.path())
            .env_clear()
            .env("PATH", &deps.client_path)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("XDG_DATA_HOME", home.join(".local/share"))
            .env("XDG_STATE_HOME", home.join(".local/state"))
            .env("npm_config_userconfig", home.join(".npmrc"))
            .env("npm_config_globalconfig", home.join("global-npmrc"))
            .env("npm_config_cache", self.npm_cache())
            .env("npm_config_audit", "false")
            .env("npm_config_fund", "false")
            .env("npm_config_update_notifier", "false")
            .env("pnpm_config_store_dir", self.pnpm_store())
            .env("pnpm_config_cache_dir", self.pnpm_cache())
            .env("pnpm_config_update_notifier", "false")
            // yarn, bun and deno keep their caches under HOME (above); none
            // may phone home or prompt.
            .env("YARN_ENABLE_TELEMETRY", "0")
            .env("YARN_ENABLE_PROGRESS_BARS", "0")
            .env("DENO_NO_UPDATE_CHECK", "1")
            .env("DENO_DIR", home.join(".cache/deno"))
            .env("NO_COLOR", "1");
        for (key, value) in &self.extra_env {
            cmd.env(key, value);
        }
        cmd
    }
}

#[track_caller]
fn write(path: &Path, contents: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", parent.display()));
    }
    std::fs::write(path, contents)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}
