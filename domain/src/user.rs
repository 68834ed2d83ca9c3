//! A user, as far as boxoffice records facts about one: the erasure of their personal
//! data. The stream's id is derived from the user id (the token's `sub`, which need not
//! be a UUID) by [`stream_id`].
//!
//! Erasing destroys the user's keys (command-api does it in the statement that appends
//! the fact, see `domain::policy`): everything sealed under them, in the store, the
//! topic, exports and read models, can no longer be read. The fact records which keys,
//! so that read models show those contacts as erased, and an auditor sees when.

use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{DomainError, ErrorKind, RefusalCode};
use crate::FACT_VERSION;

/// The namespace of user stream ids (a UUID v5 of the user id).
const USER_NAMESPACE: Uuid = Uuid::from_u128(0x6b0f_5e1c_2d4a_4f0e_9a63_0b0c_5ad1_0001);

/// The id of `user_id`'s stream.
pub fn stream_id(user_id: &str) -> Uuid {
    Uuid::new_v5(&USER_NAMESPACE, user_id.as_bytes())
}

/// What can be asked about a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// Erase the user's personal data: destroy `keys`, the keys alive now.
    ErasePersonalData {
        /// The user id (the token's `sub`).
        user_id: String,
        /// The user's keys alive now.
        keys: Vec<Uuid>,
    },
}

/// What happened to a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserFact {
    /// The user's personal data was erased: these keys are destroyed.
    PersonalDataErased {
        /// The user id.
        user_id: String,
        /// The keys destroyed.
        keys: Vec<Uuid>,
    },
}

impl DomainEvent for UserFact {
    fn event_type(&self) -> String {
        match self {
            Self::PersonalDataErased { .. } => "PersonalDataErased",
        }
        .to_owned()
    }

    fn event_version(&self) -> String {
        FACT_VERSION.to_owned()
    }
}

/// A user refuses nothing; the type exists for the store's sake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {}

impl DomainError for UserError {
    fn kind(&self) -> ErrorKind {
        match *self {}
    }

    fn code(&self) -> RefusalCode {
        match *self {}
    }
}

/// The user aggregate: whether their data was ever erased.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserData {
    erasures: u32,
}

impl UserData {
    /// How many times the user's data was erased.
    pub fn erasures(&self) -> u32 {
        self.erasures
    }
}

impl Aggregate for UserData {
    const TYPE: &'static str = "user";
    type Command = UserCommand;
    type Event = UserFact;
    type Error = UserError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let UserCommand::ErasePersonalData { user_id, keys } = command;
        // Erasing again with nothing left to destroy records nothing: the request is
        // idempotent. A first erasure is recorded even for a user without keys, so the
        // audit shows it was asked for and done.
        if keys.is_empty() && self.erasures > 0 {
            return Ok(());
        }
        sink.write(UserFact::PersonalDataErased { user_id, keys }, self)
            .await;
        Ok(())
    }

    fn apply(&mut self, fact: Self::Event) {
        match fact {
            UserFact::PersonalDataErased { .. } => self.erasures += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<UserData>;

    fn erase(keys: Vec<Uuid>) -> UserCommand {
        UserCommand::ErasePersonalData {
            user_id: "alice".into(),
            keys,
        }
    }

    fn erased(keys: Vec<Uuid>) -> UserFact {
        UserFact::PersonalDataErased {
            user_id: "alice".into(),
            keys,
        }
    }

    #[test]
    fn an_erasure_records_the_keys_it_destroys() {
        let key = Uuid::from_u128(7);
        Given::with(())
            .given_no_previous_events()
            .when(erase(vec![key]))
            .then_expect_events(vec![erased(vec![key])]);
    }

    #[test]
    fn a_first_erasure_is_recorded_even_without_keys() {
        Given::with(())
            .given_no_previous_events()
            .when(erase(vec![]))
            .then_expect_events(vec![erased(vec![])]);
    }

    #[test]
    fn erasing_again_with_nothing_left_records_nothing() {
        Given::with(())
            .given(vec![erased(vec![Uuid::from_u128(7)])])
            .when(erase(vec![]))
            .then_expect_events(vec![]);
    }

    #[test]
    fn keys_made_after_an_erasure_are_erased_by_the_next() {
        let later = Uuid::from_u128(8);
        Given::with(())
            .given(vec![erased(vec![Uuid::from_u128(7)])])
            .when(erase(vec![later]))
            .then_expect_events(vec![erased(vec![later])]);
    }

    #[test]
    fn a_user_stream_id_is_stable_per_user() {
        assert_eq!(stream_id("alice"), stream_id("alice"));
        assert_ne!(stream_id("alice"), stream_id("bob"));
    }
}
