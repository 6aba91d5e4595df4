//! The breaking-change check (`herald-codegen compat`).
//!
//! Each folder here is a case: `old/` and `new/` are two sets of definitions that differ by one kind
//! of change (most start from the same small set: an envelope, an enum and one event), and
//! `expected.txt` is what `herald-codegen compat old new` prints, stdout then stderr, then its exit
//! status. A case named after a rule shows that rule; every rule has one.
//!
//! To accept a change in output: `EXPECTORATE=overwrite cargo test -p herald-codegen compat`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use herald_codegen::compat::{self, Audience, Compatibility, Rule};

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat")
}

fn case_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(cases_dir())
        .expect("tests/compat exists")
        .map(|entry| entry.expect("readable entry"))
        .filter(|entry| entry.path().is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn herald_codegen(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herald-codegen"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("herald-codegen runs")
}

/// stdout, stderr and the exit status, as one text.
fn transcript(output: &Output) -> String {
    format!(
        "{}{}exit: {}\n",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
        output.status.code().map_or_else(|| "signal".to_owned(), |code| code.to_string())
    )
}

/// Runs every case, compares its report, checks that the exit status follows the breaking lines,
/// and that every rule is shown by some case (by the case named after it, when there is one).
#[test]
fn every_case_prints_its_expected_report_and_every_rule_has_a_case() {
    let names = case_names();
    assert!(names.len() >= Rule::ALL.len(), "expected a case per rule, found {names:?}");
    let mut reports = Vec::new();
    for name in names {
        let output = herald_codegen(&cases_dir().join(&name), &["compat", "old", "new"]);
        let text = transcript(&output);
        expectorate::assert_contents(format!("tests/compat/{name}/expected.txt"), &text);
        let expected_status = if text.contains("`reason` is missing") {
            2 // an unusable acknowledgement file stops the check
        } else if text.lines().any(|line| line.starts_with("breaking ")) {
            1
        } else {
            0
        };
        assert_eq!(output.status.code(), Some(expected_status), "{name}:\n{text}");
        reports.push((name, text));
    }
    for rule in Rule::ALL {
        let shown_in: Vec<&str> = reports
            .iter()
            .filter(|(_, text)| text.contains(&format!(" {rule}: ")))
            .map(|(name, _)| name.as_str())
            .collect();
        assert!(!shown_in.is_empty(), "no case in tests/compat shows the rule {rule}; add one");
        if reports.iter().any(|(name, _)| name == rule.as_str()) {
            assert!(shown_in.contains(&rule.as_str()), "the case {rule} does not show its rule");
        }
    }
}

/// A compatibility meets an audience's requirement exactly as the docs define it: herald needs
/// BACKWARD, browsers FORWARD, and FULL meets both.
#[test]
fn breaking_means_short_of_the_audience_requirement() {
    let check = |compatibility: Compatibility, audience: Audience, breaking: bool| {
        assert_eq!(!compatibility.satisfies(audience.required()), breaking, "{compatibility} for {audience}");
    };
    check(Compatibility::Full, Audience::Herald, false);
    check(Compatibility::Backward, Audience::Herald, false);
    check(Compatibility::Forward, Audience::Herald, true);
    check(Compatibility::None, Audience::Herald, true);
    check(Compatibility::Full, Audience::Browsers, false);
    check(Compatibility::Forward, Audience::Browsers, false);
    check(Compatibility::Backward, Audience::Browsers, true);
    check(Compatibility::None, Audience::Browsers, true);
}

#[test]
fn acknowledgement_files_are_checked() {
    let ok = "[[ack]]\nfile = \"event-defs/x.json\"\npointer = \"/properties/a\"\naudience = \"browsers\"\n\
              rule = \"field-became-optional\"\nreason = \"the page copes\"\n";
    let acks = compat::parse_acks(ok, "ack.toml").expect("a complete acknowledgement");
    let change = |file: &str, audience, rule| compat::Change {
        file: file.to_owned(),
        pointer: "/properties/a".to_owned(),
        audience,
        rule,
        compatibility: Compatibility::Backward,
        message: String::new(),
    };
    // The folder before the file name does not matter: the old side's label may differ.
    assert!(acks[0].covers(&change("old/x.json", Audience::Browsers, Rule::FieldBecameOptional)));
    assert!(!acks[0].covers(&change("old/x.json", Audience::Herald, Rule::FieldBecameOptional)));
    assert!(!acks[0].covers(&change("old/x.json", Audience::Browsers, Rule::FieldRemoved)));
    assert!(!acks[0].covers(&change("old/y.json", Audience::Browsers, Rule::FieldBecameOptional)));

    for (text, expected) in [
        ("[[ack]]\nfile = \"x.json\"\npointer = \"/a\"\n", "`reason` is missing"),
        ("[[ack]]\nfile = \"x.json\"\npointer = \"/a\"\nreason = \"  \"\n", "`reason` is missing"),
        ("[[ack]]\npointer = \"/a\"\nreason = \"r\"\n", "`file` is missing"),
        ("[[ack]]\nfile = \"x.json\"\nreason = \"r\"\n", "`pointer` is missing"),
        ("[ack]\nfile = \"x.json\"\n", "write [[ack]], not [ack]"),
        ("[[ack]]\nfile = \"x.json\"\npointer = \"\"\nreason = \"r\"\nwhy = \"w\"\n", "unknown key \"why\""),
        ("[[ack]]\nfile = \"x.json\"\npointer = \"\"\nreason = \"r\"\naudience = \"kafka\"\n", "unknown audience"),
        ("[[ack]]\nfile = \"x.json\"\npointer = \"\"\nreason = \"r\"\nrule = \"field-renamed\"\n", "unknown rule"),
        ("[[ack]\n", "not valid TOML"),
        ("[[acks]]\n", "unknown key \"acks\""),
    ] {
        let error = compat::parse_acks(text, "ack.toml").expect_err(text);
        assert!(error.contains(expected) && error.starts_with("ack.toml"), "{text:?} gave {error:?}");
    }
    assert_eq!(compat::parse_acks("# nothing acknowledged yet\n", "ack.toml"), Ok(Vec::new()));
}

/// A scratch git repository, removed when dropped.
struct ScratchRepo {
    root: PathBuf,
}

impl ScratchRepo {
    fn new(name: &str) -> ScratchRepo {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
        let root = std::env::temp_dir().join(format!("herald-compat-test-{name}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(root.join("repo/event-defs")).expect("scratch folder");
        let repo = ScratchRepo { root };
        for file in std::fs::read_dir(cases_dir().join("no-change/old")).expect("base definitions") {
            let file = file.expect("entry");
            std::fs::copy(file.path(), repo.defs().join(file.file_name())).expect("copy a definition");
        }
        repo.git(&["init", "-q"]);
        repo
    }

    fn repo(&self) -> PathBuf {
        self.root.join("repo")
    }

    fn defs(&self) -> PathBuf {
        self.repo().join("event-defs")
    }

    fn git(&self, args: &[&str]) {
        let status = Command::new("git")
            .args(["-c", "user.name=herald", "-c", "user.email=herald@example.invalid", "-c", "commit.gpgsign=false"])
            .args(args)
            .current_dir(self.repo())
            .status()
            .expect("git runs");
        assert!(status.success(), "git {args:?} failed");
    }

    fn commit(&self, message: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
    }

    /// Sets (or with `None` removes) a property of the event's payload.
    fn set_property(&self, key: &str, schema: Option<serde_json::Value>) {
        let path = self.defs().join("thing_happened.json");
        let mut event: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("the event file")).expect("JSON");
        let properties = event["properties"].as_object_mut().expect("properties");
        match schema {
            Some(schema) => properties.insert(key.to_owned(), schema),
            None => properties.remove(key),
        };
        std::fs::write(&path, serde_json::to_string_pretty(&event).expect("JSON")).expect("write the event file");
    }
}

impl Drop for ScratchRepo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// `extra` is added as a string, removed, and added again as an integer: each step is compatible
/// with the one before, but producers still sending the string break the last version. Only
/// `--transitive` sees that.
#[test]
fn transitive_checks_every_earlier_version_in_git() {
    let scratch = ScratchRepo::new("transitive");
    scratch.commit("v1");
    scratch.set_property("extra", Some(serde_json::json!({"type": "string"})));
    scratch.commit("v2: an optional string");
    scratch.set_property("extra", None);
    scratch.commit("v3: gone");
    scratch.set_property("extra", Some(serde_json::json!({"type": "integer"})));

    let last = herald_codegen(&scratch.repo(), &["compat", "--against", "HEAD"]);
    let text = transcript(&last);
    assert!(last.status.success(), "{text}");
    assert!(text.contains("compatible   herald   FULL") && text.contains("field-added"), "{text}");

    let all = herald_codegen(&scratch.repo(), &["compat", "--transitive"]);
    let text = transcript(&all);
    assert_eq!(all.status.code(), Some(1), "{text}");
    assert!(
        text.contains(
            "breaking     herald   NONE     event-defs/thing_happened.json#/properties/extra type-changed: \"extra\" was a string and is an integer"
        ),
        "{text}"
    );
    assert!(text.contains("at ") && text.contains(" v2: an optional string -> "), "{text}");

    // Run from a subfolder with --defs, and acknowledged: passes.
    std::fs::write(
        scratch.defs().join("compat-ack.toml"),
        "[[ack]]\nfile = \"thing_happened.json\"\npointer = \"/properties/extra\"\nrule = \"type-changed\"\n\
         reason = \"No producer ever sent extra.\"\n",
    )
    .expect("write the acknowledgements");
    let acknowledged = herald_codegen(&scratch.defs(), &["--defs", ".", "compat", "--transitive"]);
    let text = transcript(&acknowledged);
    assert!(acknowledged.status.success(), "{text}");
    assert!(
        text.contains("acknowledged herald   NONE") && text.contains("(acknowledged: No producer ever sent extra.)"),
        "{text}"
    );
}

#[test]
fn a_revision_missing_from_a_shallow_clone_is_skipped_and_an_unknown_one_is_an_error() {
    let scratch = ScratchRepo::new("shallow");
    scratch.commit("v1");
    scratch.set_property("extra", Some(serde_json::json!({"type": "string"})));
    scratch.commit("v2");

    let nothing = herald_codegen(&scratch.repo(), &["compat", "--against", "HEAD"]);
    let text = transcript(&nothing);
    assert!(nothing.status.success(), "{text}");
    assert!(text.contains("compat: no changes that herald or browsers would notice"), "{text}");

    let unknown = herald_codegen(&scratch.repo(), &["compat", "--against", "no-such-revision"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", transcript(&unknown));

    let source = format!("file://{}", scratch.repo().display());
    let shallow = scratch.root.join("shallow");
    let status = Command::new("git")
        .args(["clone", "-q", "--depth", "1", &source])
        .arg(&shallow)
        .status()
        .expect("git clone runs");
    assert!(status.success());
    let skipped = herald_codegen(&shallow, &["compat", "--against", "HEAD~1"]);
    let text = transcript(&skipped);
    assert!(skipped.status.success(), "{text}");
    assert!(text.contains("compat: skipped: HEAD~1 is not in this clone, which is shallow"), "{text}");
}
