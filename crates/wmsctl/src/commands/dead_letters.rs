//! `dlq list` and `dlq replay`: the dead-letter stream, over `wmslink.ops.v1.DeadLetterService`.

use wmslink_proto::ops::v1 as pb;

use crate::cli::DlqCommand;
use crate::client::{CallExt, Clients, DEAD_LETTERS};
use crate::error::CliError;
use crate::output::{Printer, bare_table, or_dash, table, time, to_json};

pub async fn run(
    clients: &Clients,
    printer: &Printer,
    command: DlqCommand,
) -> Result<(), CliError> {
    let mut client = clients.dead_letters().await?;
    match command {
        DlqCommand::List {
            subject,
            page_size,
            page_token,
            all,
        } => {
            let mut page_token = page_token.unwrap_or_default();
            let mut first = true;
            loop {
                let page = client
                    .list(pb::ListDeadLettersRequest {
                        subject: subject.clone().unwrap_or_default(),
                        page_size,
                        page_token: page_token.clone(),
                    })
                    .await
                    .or_cli(DEAD_LETTERS)?;
                let json = to_json("wmslink.ops.v1.ListDeadLettersResponse", &page)?;
                printer.emit(&json, || dead_letters_table(&page, first, all));
                first = false;
                if !all || page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
        }
        DlqCommand::Replay { ids } => {
            let answer = client
                .replay(pb::ReplayDeadLettersRequest { sequences: ids })
                .await
                .or_cli(DEAD_LETTERS)?;
            let json = to_json("wmslink.ops.v1.ReplayDeadLettersResponse", &answer)?;
            printer.emit(&json, || {
                let mut out = table(&["ID", "REPUBLISHED TO", "NEW MSG ID"]);
                for replayed in &answer.replayed {
                    out.add_row(vec![
                        replayed.sequence.to_string(),
                        replayed.subject.clone(),
                        replayed.msg_id.clone(),
                    ]);
                }
                out.to_string()
            });
        }
    }
    Ok(())
}

fn dead_letters_table(page: &pb::ListDeadLettersResponse, header: bool, all: bool) -> String {
    let mut out = if header {
        table(&["ID", "AT", "SUBJECT", "CONSUMER", "DELIVERIES", "REASON"])
    } else {
        bare_table()
    };
    for dead in &page.dead_letters {
        out.add_row(vec![
            dead.sequence.to_string(),
            time(dead.dead_lettered_at.as_ref()),
            dead.subject.clone(),
            or_dash(&dead.consumer),
            dead.deliveries.to_string(),
            dead.reason.clone(),
        ]);
    }
    let mut text = if page.dead_letters.is_empty() {
        if header {
            "no dead letters".to_owned()
        } else {
            String::new()
        }
    } else {
        out.to_string()
    };
    if !all && !page.next_page_token.is_empty() {
        text.push_str(&format!(
            "\n\nmore: --page-token {} (or --all)",
            page.next_page_token
        ));
    }
    text
}
