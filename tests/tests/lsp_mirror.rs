//! The editor bridge mirrors the whole workspace, not only open buffers:
//! an editor shares a directory with `weft/share`, a headless `weft join`
//! and a second editor (`weft/join`, with `$/progress`) get the tree on
//! disk, plain file writes travel both ways, and a file open in an editor
//! follows the editor, not the disk: a save is not applied twice, a remote
//! edit reaches the buffer (not the disk) while it is open, and the disk
//! catches up when the editor closes it.

use std::path::Path;
use std::time::Duration;

use weft_tests::lsp::{LspEditor, file_uri};
use weft_tests::{HubProcess, WeftProcess};

const T: Duration = Duration::from_secs(60);

fn put(root: &Path, rel: &str, text: &str) -> anyhow::Result<()> {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)?;
    Ok(())
}

fn read(root: &Path, rel: &str) -> Option<String> {
    std::fs::read_to_string(root.join(rel)).ok()
}

/// Waits for a condition on disk while the editors keep answering the
/// bridge (an editor that stops reading would stall its bridge).
async fn wait_disk(editors: &mut [&mut LspEditor], what: &str, mut cond: impl FnMut() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + T;
    while !cond() {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "timed out after {T:?} waiting for {what}");
        for editor in editors.iter_mut() {
            editor.pump(Duration::from_millis(10)).await?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bridge_mirrors_files_the_editor_has_not_opened() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let hub = HubProcess::start(&dir.path().join("hub"))?;
    let (root_a, root_b, root_c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    for i in 0..60 {
        put(&root_a, &format!("src/m{}/f{i}.rs", i % 7), &format!("// f{i} ü\nfn f{i}() {{}}\n"))?;
    }
    put(&root_a, ".gitignore", "secret/\n")?;
    put(&root_a, "secret/key.txt", "do not share\n")?;
    let open_text = "fn open() {\n    // 🦀\n}\n";
    put(&root_a, "src/open.rs", open_text)?;

    // Editor A has one file open, then shares the directory.
    let mut a = LspEditor::spawn_with(&dir.path().join("logs"), "alice", &[], &[("WEFT_HUB_TOKEN", &hub.admin)])?;
    a.initialize("utf-16", "Alice").await?;
    let open_a = file_uri(&root_a.join("src/open.rs"));
    a.open(&open_a, open_text).await?;
    let shared = a.share(&file_uri(&root_a), Some(&hub.ws_base())).await?;
    let link = shared["links"]["editor"].as_str().unwrap_or_default().to_owned();
    assert!(link.starts_with("weft://"), "{shared}");

    // A headless guest gets every file, the open one included.
    let mut join =
        WeftProcess::spawn(&["join", &link, &root_b.to_string_lossy()], &[], &dir.path().join("join.stderr"))?;
    let joined = join.next_line(T)?;
    assert!(joined.starts_with("joined "), "{joined}");
    for i in 0..60 {
        let rel = format!("src/m{}/f{i}.rs", i % 7);
        assert_eq!(read(&root_b, &rel), read(&root_a, &rel), "{rel}");
    }
    assert_eq!(read(&root_b, "src/open.rs").as_deref(), Some(open_text));
    assert!(!root_b.join("secret").exists(), "ignored paths stay home");

    // A second editor joins into an empty directory and is told how far
    // the transfer has got.
    let mut c = LspEditor::spawn(&dir.path().join("logs"), "carol")?;
    c.initialize_offering(&["utf-8"], "Carol").await?;
    let joined = c.join(&link, None, &file_uri(&root_c)).await?;
    assert_eq!(joined["role"], "editor", "{joined}");
    let end = c.wait_notification("$/progress", T, |p| p["value"]["kind"] == "end").await?;
    let token = end["token"].clone();
    assert!(
        c.server_requests.iter().any(|r| r.method == "window/workDoneProgress/create" && r.params["token"] == token),
        "the progress token was created first"
    );
    let begin = c.notifications.iter().position(|n| n.method == "$/progress" && n.params["value"]["kind"] == "begin");
    assert!(begin.is_some(), "a begin came before the end: {:?}", c.notifications);
    wait_disk(&mut [&mut a, &mut c], "carol's copy of the tree", || {
        (0..60).all(|i| {
            let rel = format!("src/m{}/f{i}.rs", i % 7);
            read(&root_c, &rel).is_some() && read(&root_c, &rel) == read(&root_a, &rel)
        })
    })
    .await?;

    // A plain write on B's disk to a file A has open reaches A's buffer,
    // not A's disk: the open file follows the editor.
    let from_b = "fn open() {\n    // 🦀\n    b_was_here();\n}\n";
    put(&root_b, "src/open.rs", from_b)?;
    a.wait_text(&open_a, from_b, T).await?;
    a.pump(Duration::from_millis(500)).await?;
    assert_eq!(read(&root_a, "src/open.rs").as_deref(), Some(open_text), "the mirror wrote a file the editor holds");

    // A types, then saves (writes its buffer to disk, as an editor does):
    // the save must not be taken for new edits and applied twice.
    a.type_at(&open_a, 0, "// typed by A\n").await?;
    let typed = a.text(&open_a).unwrap_or_default().to_owned();
    put(&root_a, "src/open.rs", &typed)?;
    wait_disk(&mut [&mut a, &mut c], "A's typing on B's disk", || {
        read(&root_b, "src/open.rs").as_deref() == Some(&typed)
    })
    .await?;
    a.pump(Duration::from_millis(800)).await?;
    assert_eq!(a.text(&open_a), Some(typed.as_str()), "the save came back as an edit");
    assert_eq!(read(&root_b, "src/open.rs").as_deref(), Some(typed.as_str()), "the save was applied twice");

    // Files A has not opened sync with A's disk both ways.
    put(&root_a, "src/m1/f1.rs", "// f1 rewritten on A's disk\n")?;
    wait_disk(&mut [&mut a, &mut c], "A's disk write on B and C", || {
        read(&root_b, "src/m1/f1.rs").as_deref() == Some("// f1 rewritten on A's disk\n")
            && read(&root_c, "src/m1/f1.rs").as_deref() == Some("// f1 rewritten on A's disk\n")
    })
    .await?;
    put(&root_b, "src/m2/f2.rs", "// f2 rewritten on B's disk\n")?;
    put(&root_b, "src/new.rs", "// created on B\n")?;
    wait_disk(&mut [&mut a, &mut c], "B's writes on A's disk", || {
        read(&root_a, "src/m2/f2.rs").as_deref() == Some("// f2 rewritten on B's disk\n")
            && read(&root_a, "src/new.rs").as_deref() == Some("// created on B\n")
    })
    .await?;

    // Another remote edit while open, then A closes the file without
    // saving: the disk is brought to the shared text.
    let uri_c = file_uri(&root_c.join("src/open.rs"));
    c.open(&uri_c, &read(&root_c, "src/open.rs").unwrap_or_default()).await?;
    c.type_at(&uri_c, 0, "// from C\n").await?;
    let expected = format!("// from C\n{typed}");
    a.wait_text(&open_a, &expected, T).await?;
    assert_eq!(read(&root_a, "src/open.rs").as_deref(), Some(typed.as_str()));
    a.close(&open_a).await?;
    wait_disk(&mut [&mut a, &mut c], "A's disk to follow the shared text after close", || {
        read(&root_a, "src/open.rs").as_deref() == Some(expected.as_str())
    })
    .await?;
    wait_disk(&mut [&mut a, &mut c], "B's disk", || read(&root_b, "src/open.rs").as_deref() == Some(expected.as_str()))
        .await?;
    // Closed: A's disk writes travel again.
    put(&root_a, "src/open.rs", "// replaced on A's disk\n")?;
    c.wait_text(&uri_c, "// replaced on A's disk\n", T).await?;

    assert!(a.violations.is_empty() && c.violations.is_empty(), "{:?} {:?}", a.violations, c.violations);
    a.shutdown().await?;
    c.shutdown().await?;
    Ok(())
}
