//! `idle-flood`: connections that send nothing; when the server closes one, it is opened again
//! (after a short pause) until the end.

use std::sync::Arc;

use super::conn::Attack;

pub(crate) async fn run(attack: &Arc<Attack>) {
    attack.each_repeating(connection).await;
}

async fn connection(attack: Arc<Attack>, i: usize) -> bool {
    match attack.connect(i).await {
        Some(mut stream) => attack.hold(&mut stream).await,
        None => false,
    }
}
