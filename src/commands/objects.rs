//! `bsfg put-object` and `bsfg get-object`: artifacts stream between a file and the node in
//! chunks, with a progress bar on stderr when it is a terminal.

use std::{
    io::IsTerminal,
    os::{fd::AsFd, unix::fs::PermissionsExt},
    path::Path,
};

use bsfg_actors::transport::framed::StreamError;
use bsfg_proto::{object, ArtifactRef, PutObjectRequest};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::signal::unix::{signal, SignalKind};

use super::{connect, CommandError};
use crate::{
    cli::{GetObjectArgs, ObjectArgs, PutObjectArgs},
    client::ClientError,
};

/// Prints the artifact reference of the stored file.
pub async fn put(args: PutObjectArgs) -> anyhow::Result<()> {
    let path = &args.file;
    let unreadable = |e: std::io::Error| CommandError::invalid(format!("cannot read {}: {e}", path.display()));
    let mut file = tokio::fs::File::open(path).await.map_err(unreadable)?;
    let metadata = file.metadata().await.map_err(unreadable)?;
    // The size is announced before the body: a pipe, a FIFO or a device has none to announce
    // (its length reads 0), and its content would be stored as an empty artifact.
    if !metadata.is_file() {
        let refused = format!(
            "{} is not a regular file (a pipe, a FIFO or a device has no size to announce): write it to a file first",
            path.display()
        );
        return Err(CommandError::invalid(refused).into());
    }
    let size = metadata.len();
    let client = connect(&args.object.conn).await?;
    let request = PutObjectRequest {
        bucket: args.object.bucket,
        key: args.object.key,
        size,
        media_type: Some(args.media_type.clone()),
    };
    let bar = progress(Some(size));
    let stored = client.put_object(request, &mut file, |n| bar.inc(n as u64)).await;
    bar.finish_and_clear();
    client.close().await;
    let changed = |what: String| CommandError::invalid(format!("{} changed while it was sent: {what}", path.display()));
    let meta = stored.map_err(|e| match e {
        ClientError::Stream(StreamError::Source(e)) => changed(format!("{e} of {size}; nothing was stored")),
        other => CommandError::from(other),
    })?;
    // A file still being written is stored as the part of it that was there at the start.
    let now = tokio::fs::metadata(path).await.map_or(size, |m| m.len());
    if now != size {
        let what = format!("its first {size} bytes were stored, it now holds {now}; put it again once it is complete");
        return Err(changed(what).into());
    }
    let reference = ArtifactRef {
        bucket: meta.bucket,
        key: meta.key,
        digest: meta.digest,
        size: meta.size,
        media_type: meta.media_type.unwrap_or(args.media_type),
        file_name: file_name(path),
    };
    println!("{}", serde_json::to_string(&reference)?);
    Ok(())
}

/// Writes the artifact to `--output` (printing its metadata) or to stdout.
pub async fn get(args: GetObjectArgs) -> anyhow::Result<()> {
    let client = connect(&args.object.conn).await?;
    let result = match &args.output {
        Some(path) => get_to_file(&client, &args.object, path).await,
        None => get_to_stdout(&client, &args.object).await,
    };
    client.close().await;
    result
}

async fn get_to_stdout(client: &crate::client::Client, args: &ObjectArgs) -> anyhow::Result<()> {
    // A duplicate of the stdout descriptor, written through tokio's blocking pool.
    let fd = std::io::stdout().as_fd().try_clone_to_owned()?;
    let mut stdout = tokio::fs::File::from_std(std::fs::File::from(fd));
    let bar = progress(None);
    let got = client
        .get_object(&args.bucket, &args.key, &mut stdout, |n| bar.inc(n as u64))
        .await;
    bar.finish_and_clear();
    got.map(drop).map_err(|e| CommandError::from(e).into())
}

/// The artifact lands in a temporary file beside `path`, renamed onto it only once verified; an
/// interruption (SIGINT, SIGTERM) removes it. The file is made as any new file is (mode 0666
/// less the umask), not private to its owner as temporary files are.
async fn get_to_file(client: &crate::client::Client, args: &ObjectArgs, path: &Path) -> anyhow::Result<()> {
    let unwritable = |e: std::io::Error| CommandError::invalid(format!("cannot write {}: {e}", path.display()));
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    // Listening before the temporary file exists: a signal then can only end the get here.
    let (mut int, mut term) = (signal(SignalKind::interrupt())?, signal(SignalKind::terminate())?);
    let temp = tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o666))
        .tempfile_in(dir)
        .map_err(unwritable)?;
    let mut sink = tokio::fs::File::from_std(temp.as_file().try_clone().map_err(unwritable)?);
    let bar = progress(None);
    let get = client.get_object(&args.bucket, &args.key, &mut sink, |n| bar.inc(n as u64));
    let got = tokio::select! {
        got = get => got,
        _ = int.recv() => return Err(interrupted(path).into()),
        _ = term.recv() => return Err(interrupted(path).into()),
    };
    bar.finish_and_clear();
    let meta = got.map_err(CommandError::from)?;
    temp.persist(path).map_err(|e| unwritable(e.error))?;
    println!("{}", serde_json::to_string(&meta)?);
    Ok(())
}

/// A get stopped by a signal: the partial file is gone with the temporary file (retryable).
fn interrupted(path: &Path) -> CommandError {
    let message = format!("interrupted: nothing was written to {}", path.display());
    CommandError::new(bsfg_proto::ErrorCode::Unavailable, message)
}

/// A progress bar on stderr, hidden when stderr is not a terminal. A get learns the size only
/// once the node answers, so it counts bytes without a total.
fn progress(size: Option<u64>) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match size {
        Some(size) => (
            ProgressBar::new(size),
            "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        ),
        None => (ProgressBar::no_length(), "{spinner} {bytes} {bytes_per_sec}"),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style);
    }
    bar
}

/// The file's name, when it is acceptable as the reference's `file_name`.
fn file_name(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    object::check_file_name(name).ok().map(|()| name.to_owned())
}
