//! `herald-codegen compat`: the command around [`herald_codegen::compat`]. It finds the two sets of
//! definitions (two folders, or the definitions folder and its versions in git), loads both with
//! the generator's own loader, prints one line per change and decides the exit status.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use herald_codegen::Model;
use herald_codegen::compat::{self, Ack, Change};

/// The acknowledgement file's name inside the new definitions folder.
const ACK_FILE: &str = "compat-ack.toml";

// The first line starts on the quote's line: a `\` line continuation would eat its indentation.
pub(crate) const USAGE: &str = "    compat OLD NEW       compare the definitions in folder OLD with those in folder NEW
    compat --against REV [--transitive]
                         compare the definitions folder with its version at git revision REV (with
                         --transitive: with every version on REV's first-parent history; alone,
                         REV is HEAD)
                         options: --ack FILE (default: compat-ack.toml in the new definitions folder)
                         exit status 1 when a breaking change is not acknowledged; see
                         docs/event-definitions.md, \"The breaking-change check\"
";

struct Options {
    folders: Vec<PathBuf>,
    against: Option<String>,
    transitive: bool,
    ack: Option<PathBuf>,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut options = Options { folders: Vec::new(), against: None, transitive: false, ack: None };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--against" => options.against = Some(args.next().ok_or("--against needs a git revision")?.clone()),
            "--ack" => options.ack = Some(PathBuf::from(args.next().ok_or("--ack needs a file")?)),
            "--transitive" => options.transitive = true,
            flag if flag.starts_with("--") => return Err(format!("compat: unknown option {flag}\n\n{USAGE}")),
            folder => options.folders.push(PathBuf::from(folder)),
        }
    }
    Ok(options)
}

/// Runs `compat` with the arguments after the command; `defs` is the definitions folder (the new
/// side in git mode).
pub(crate) fn run(args: &[String], defs: impl FnOnce() -> Result<PathBuf, String>) -> Result<ExitCode, String> {
    let options = options(args)?;
    let git_mode = options.against.is_some() || options.transitive;
    let new_dir = match (options.folders.as_slice(), git_mode) {
        ([_, new], false) => new.clone(),
        ([], true) => defs()?,
        _ => return Err(format!("compat takes two folders, or --against REV\n\n{USAGE}")),
    };
    let Some(new) = load(&new_dir, "the new definitions")? else {
        return Ok(ExitCode::FAILURE);
    };
    let ack_path = options.ack.clone().unwrap_or_else(|| new_dir.join(ACK_FILE));
    let acks = match std::fs::read_to_string(&ack_path) {
        Ok(text) => compat::parse_acks(&text, &ack_path.display().to_string())?,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound && options.ack.is_none() => Vec::new(),
        Err(error) => return Err(format!("cannot read the acknowledgement file {}: {error}", ack_path.display())),
    };
    let new_folder = folder_name(&new_dir);
    let mut report = Report { acks, ack_path, breaking: Vec::new(), counts: [0; 3] };
    if !git_mode {
        let old_dir = &options.folders[0];
        let Some(old) = load(old_dir, "the old definitions")? else {
            return Ok(ExitCode::FAILURE);
        };
        println!("compat: {} -> {}", old_dir.display(), new_dir.display());
        report.add(compat::compare(&old, &folder_name(old_dir), &new, &new_folder));
        return Ok(report.finish());
    }

    let git = Git { dir: new_dir.clone() };
    let rev = options.against.clone().unwrap_or_else(|| "HEAD".to_owned());
    if git.run(&["rev-parse", "--verify", "-q", &format!("{rev}^{{commit}}")]).is_err() {
        if git.run(&["rev-parse", "--is-shallow-repository"]).is_ok_and(|shallow| shallow == "true") {
            println!(
                "compat: skipped: {rev} is not in this clone, which is shallow; fetch more history (for example \
                 `git fetch --deepen=1`) to check against it"
            );
            return Ok(ExitCode::SUCCESS);
        }
        return Err(format!("compat: {rev} is not a commit of the repository holding {}", new_dir.display()));
    }
    let prefix = git.run(&["rev-parse", "--show-prefix"])?;
    let path = prefix.trim_end_matches('/').to_owned();
    let commits: Vec<String> = if options.transitive {
        git.run(&["log", "--first-parent", "--format=%H", &rev, "--", "."])?.lines().map(str::to_owned).collect()
    } else {
        vec![git.run(&["rev-parse", &format!("{rev}^{{commit}}")])?]
    };
    let scratch = Scratch::new()?;
    let mut seen_trees = BTreeSet::new();
    let mut compared = 0;
    for (index, commit) in commits.iter().enumerate() {
        let title = git.run(&["log", "-1", "--format=%h %s", commit])?;
        let Ok(tree) = git.run(&["rev-parse", "--verify", "-q", &format!("{commit}:{path}")]) else {
            println!("compat: skipped {title}: it has no {new_folder}/");
            continue;
        };
        if !seen_trees.insert(tree.clone()) {
            continue;
        }
        let old_dir = scratch.path.join(index.to_string()).join(&new_folder);
        git.extract(&tree, &old_dir)?;
        let old = match herald_codegen::load(&old_dir) {
            Ok(model) => model,
            Err(diagnostics) => {
                let first = diagnostics.0.first().map(|d| d.one_line()).unwrap_or_default();
                println!(
                    "compat: skipped {title}: its definitions do not load with this generator ({} problems; the first: {first})",
                    diagnostics.0.len()
                );
                continue;
            }
        };
        compared += 1;
        println!("compat: {new_folder}/ at {title} -> {new_folder}/ in the working tree");
        report.add(compat::compare(&old, &new_folder, &new, &new_folder));
    }
    if compared == 0 {
        println!("compat: nothing to compare with: no version of {new_folder}/ at {rev} loads");
    }
    Ok(report.finish())
}

/// Loads a definitions folder, printing its problems when it does not load.
fn load(dir: &Path, what: &str) -> Result<Option<Model>, String> {
    match herald_codegen::load(dir) {
        Ok(model) => Ok(Some(model)),
        Err(diagnostics) => {
            eprintln!("{diagnostics}");
            eprintln!("compat: {what} ({}) do not load; fix them first", dir.display());
            Ok(None)
        }
    }
}

fn folder_name(dir: &Path) -> String {
    let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    absolute.file_name().map_or_else(|| absolute.display().to_string(), |name| name.to_string_lossy().into_owned())
}

/// The lines printed so far and what they add up to.
struct Report {
    acks: Vec<Ack>,
    ack_path: PathBuf,
    /// Unacknowledged breaking changes, for the help at the end.
    breaking: Vec<Change>,
    /// Breaking, acknowledged, compatible.
    counts: [usize; 3],
}

impl Report {
    fn add(&mut self, changes: Vec<Change>) {
        for change in changes {
            let ack = change.breaking().then(|| self.acks.iter().find(|ack| ack.covers(&change))).flatten();
            let verdict = match (change.breaking(), ack) {
                (true, None) => "breaking",
                (true, Some(_)) => "acknowledged",
                (false, _) => "compatible",
            };
            let mut line = format!(
                "{verdict:<12} {:<8} {:<8} {}#{} {}: {}",
                change.audience.as_str(),
                change.compatibility.as_str(),
                change.file,
                change.pointer,
                change.rule,
                change.message
            );
            if let Some(ack) = ack {
                line.push_str(&format!(" (acknowledged: {})", ack.reason));
            }
            println!("{line}");
            match verdict {
                "breaking" => {
                    self.counts[0] += 1;
                    self.breaking.push(change);
                }
                "acknowledged" => self.counts[1] += 1,
                _ => self.counts[2] += 1,
            }
        }
    }

    fn finish(self) -> ExitCode {
        let [breaking, acknowledged, compatible] = self.counts;
        let total = breaking + acknowledged + compatible;
        if total == 0 {
            println!("compat: no changes that herald or browsers would notice");
            return ExitCode::SUCCESS;
        }
        println!(
            "compat: {total} change{}: {breaking} breaking, {acknowledged} acknowledged, {compatible} compatible",
            if total == 1 { "" } else { "s" }
        );
        if breaking == 0 {
            return ExitCode::SUCCESS;
        }
        eprintln!(
            "help: make the change compatible (docs/event-definitions.md, \"The breaking-change check\"), or, if the break \
             is intended, acknowledge it in {} with a reason:",
            self.ack_path.display()
        );
        let mut seen = BTreeSet::new();
        for change in &self.breaking {
            if seen.insert((change.file_name().to_owned(), change.pointer.clone(), change.audience, change.rule)) {
                eprintln!(
                    "\n[[ack]]\nfile = {:?}\npointer = {:?}\naudience = \"{}\"\nrule = \"{}\"\nreason = \"...\"",
                    change.file_name(),
                    change.pointer,
                    change.audience,
                    change.rule
                );
            }
        }
        ExitCode::FAILURE
    }
}

/// git, run in the definitions folder.
struct Git {
    dir: PathBuf,
}

impl Git {
    fn output(&self, args: &[&str]) -> Result<Vec<u8>, String> {
        let output = Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(args)
            .output()
            .map_err(|error| format!("cannot run git (is it installed?): {error}"))?;
        if output.status.success() {
            Ok(output.stdout)
        } else {
            Err(format!(
                "`git {}` in {} failed: {}",
                args.join(" "),
                self.dir.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    }

    fn run(&self, args: &[&str]) -> Result<String, String> {
        Ok(String::from_utf8_lossy(&self.output(args)?).trim().to_owned())
    }

    /// Writes the `*.json` files directly inside `tree` to `into`.
    fn extract(&self, tree: &str, into: &Path) -> Result<(), String> {
        std::fs::create_dir_all(into).map_err(|error| format!("cannot create {}: {error}", into.display()))?;
        let listing = self.output(&["ls-tree", "-z", "--full-tree", tree])?;
        for entry in listing.split(|byte| *byte == 0).filter(|entry| !entry.is_empty()) {
            let entry = String::from_utf8_lossy(entry);
            // `<mode> <type> <object>\t<name>`
            let Some((meta, name)) = entry.split_once('\t') else { continue };
            let mut meta = meta.split(' ');
            let (Some(_), Some("blob"), Some(object)) = (meta.next(), meta.next(), meta.next()) else { continue };
            if !name.ends_with(".json") || name.contains('/') {
                continue;
            }
            let bytes = self.output(&["cat-file", "blob", object])?;
            let path = into.join(name);
            std::fs::write(&path, bytes).map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        }
        Ok(())
    }
}

/// A scratch folder under the system's temporary folder, removed when dropped.
struct Scratch {
    path: PathBuf,
}

impl Scratch {
    fn new() -> Result<Scratch, String> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!("herald-compat-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|error| format!("cannot create {}: {error}", path.display()))?;
        Ok(Scratch { path })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Best effort: a leftover folder in the temporary folder harms nothing.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
