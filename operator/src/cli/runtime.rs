//! The tokio runtime each command runs on.

use tokio::runtime::{Builder, Runtime};

use super::Command;

/// The operator serves many objects at once, and `wait` may watch the
/// Kubernetes API: they get a thread per core. Every other verb drives one
/// connection, one query at a time, so extra threads bring it nothing but
/// hand-offs: on the multi-thread runtime the connection's driver task and
/// the command's future woke each other across threads, some four context
/// switches per migration where `psql` makes one.
pub fn build(command: &Command) -> std::io::Result<Runtime> {
    let mut builder = match command {
        Command::Run(_) | Command::Wait(_) => Builder::new_multi_thread(),
        _ => Builder::new_current_thread(),
    };
    builder.enable_all().build()
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use tokio::runtime::RuntimeFlavor;

    use super::*;
    use crate::cli::Cli;

    fn flavor(args: &[&str]) -> RuntimeFlavor {
        let cli = Cli::try_parse_from(args).expect("the arguments parse");
        build(&cli.command)
            .expect("a runtime")
            .handle()
            .runtime_flavor()
    }

    #[test]
    fn the_one_connection_verbs_run_on_the_current_thread() {
        for args in [
            &["schemaop", "upgrade"][..],
            &["schemaop", "downgrade", "--to", "base"],
            &["schemaop", "status"],
            &["schemaop", "plan", "--sql"],
            &["schemaop", "stamp", "latest"],
        ] {
            assert_eq!(flavor(args), RuntimeFlavor::CurrentThread, "{args:?}");
        }
    }

    #[test]
    fn the_operator_and_wait_keep_a_thread_per_core() {
        assert_eq!(flavor(&["schemaop", "run"]), RuntimeFlavor::MultiThread);
        assert_eq!(
            flavor(&["schemaop", "wait", "--revision", "1"]),
            RuntimeFlavor::MultiThread
        );
    }
}
