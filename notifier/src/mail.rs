//! What a notification says: the view of a booking's turn, rendered through the
//! templates in `notifier/templates/` (askama: checked when the crate is built), with
//! an iCalendar file for a confirmed booking, into a message with a `Message-ID` that
//! names the fact it announces.

use askama::Template;
use chrono::{DateTime, Utc};
use domain::booking::Reason;
use lettre::message::header::ContentType;
use lettre::message::{Attachment, Mailbox, MultiPart};
use lettre::Message;
use uuid::Uuid;

/// Which turn of a booking a message announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Seats sold, payment taken.
    BookingConfirmed,
    /// The request failed (sold out, payment declined, hold expired).
    BookingRejected,
    /// The customer cancelled, and the money went back.
    BookingCancelled,
    /// The event was cancelled: the booking was refunded (confirmed) or dropped
    /// (pending). One message per booking, in place of a rejection or refund message.
    EventCancelled,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Self; 4] = [
        Self::BookingConfirmed,
        Self::BookingRejected,
        Self::BookingCancelled,
        Self::EventCancelled,
    ];

    /// The name in the sent log, the metrics and the templates.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BookingConfirmed => "booking_confirmed",
            Self::BookingRejected => "booking_rejected",
            Self::BookingCancelled => "booking_cancelled",
            Self::EventCancelled => "event_cancelled",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == name)
    }
}

/// The `Message-ID` of the message announcing fact `sequence` of booking `booking_id`:
/// the same for every attempt and every resend, so a mailbox (or a person) sees a
/// resend as the same message.
pub fn message_id(booking_id: Uuid, sequence: i64, domain: &str) -> String {
    format!("<booking-{booking_id}.{sequence}@{domain}>")
}

/// The reason in plain words.
pub fn reason_in_words(reason: Option<Reason>) -> &'static str {
    match reason {
        Some(Reason::SoldOut) => "there were not enough seats left",
        Some(Reason::PaymentDeclined) => "your card was declined",
        Some(Reason::HoldExpired) => {
            "the payment did not go through in time, so the seats went back on sale"
        }
        Some(Reason::EventCancelled) => "the event was cancelled",
        Some(Reason::CancelledByUser) => "you cancelled it",
        None => "it could not be completed",
    }
}

/// An amount in minor units, as people read it: `150.00 EUR`. Every currency is taken
/// to have two decimals (true of those this box office sells in; JPY would not be).
pub fn money(minor: i64, currency: &str) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let minor = minor.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", minor / 100, minor % 100)
}

/// A time as the event's listing gives it (in UTC, which is what the API serves).
pub fn when(at: DateTime<Utc>) -> String {
    at.format("%A %-d %B %Y, %H:%M UTC").to_string()
}

/// Everything a message says. Built from the store's facts by the sender.
#[derive(Debug, Clone)]
pub struct View {
    /// Which message.
    pub kind: Kind,
    /// Whom to greet: the contact's name, or the address.
    pub customer: String,
    /// The booking.
    pub booking_id: Uuid,
    /// The event's name.
    pub event_name: String,
    /// The location's name.
    pub venue: String,
    /// The hall.
    pub hall: String,
    /// When it starts.
    pub starts_at: DateTime<Utc>,
    /// When it ends.
    pub ends_at: DateTime<Utc>,
    /// Seats booked.
    pub seats: u32,
    /// What the booking costs, in minor units.
    pub amount_cents: i64,
    /// What went back, in minor units (cancellations).
    pub refunded_cents: i64,
    /// The currency.
    pub currency: String,
    /// Why it was rejected or cancelled.
    pub reason: Option<Reason>,
    /// The organiser's words when the event was cancelled.
    pub organiser_note: Option<String>,
    /// For a cancelled event: whether the booking had been confirmed (and paid).
    pub was_confirmed: bool,
    /// When the fact was recorded (the calendar file's stamp).
    pub recorded_at: DateTime<Utc>,
}

/// The values the templates see as `m` (all text, formatted here once).
struct Fields<'a> {
    kind: &'static str,
    customer: &'a str,
    booking_id: String,
    event_name: &'a str,
    venue: &'a str,
    hall: &'a str,
    starts: String,
    seats: u32,
    amount: String,
    refunded: String,
    reason: &'static str,
    organiser_note: Option<&'a str>,
    was_confirmed: bool,
    ics_name: String,
}

#[derive(Template)]
#[template(path = "subject.txt")]
struct SubjectTemplate<'a> {
    m: &'a Fields<'a>,
}

#[derive(Template)]
#[template(path = "text.txt")]
struct TextTemplate<'a> {
    m: &'a Fields<'a>,
}

#[derive(Template)]
#[template(path = "message.html")]
struct HtmlTemplate<'a> {
    m: &'a Fields<'a>,
    subject: &'a str,
}

/// A message's parts, rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The subject line.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
    /// The calendar file (name, content), for a confirmed booking.
    pub calendar: Option<(String, String)>,
}

impl View {
    fn fields(&self) -> Fields<'_> {
        Fields {
            kind: self.kind.as_str(),
            customer: &self.customer,
            booking_id: self.booking_id.to_string(),
            event_name: &self.event_name,
            venue: &self.venue,
            hall: &self.hall,
            starts: when(self.starts_at),
            seats: self.seats,
            amount: money(self.amount_cents, &self.currency),
            refunded: money(self.refunded_cents, &self.currency),
            reason: reason_in_words(self.reason),
            organiser_note: self.organiser_note.as_deref(),
            was_confirmed: self.was_confirmed,
            ics_name: calendar_file_name(&self.event_name),
        }
    }

    /// The subject, the text and HTML parts, and the calendar file.
    pub fn render(&self, domain: &str) -> Result<Rendered, askama::Error> {
        let f = self.fields();
        // One line, whatever a template or an event's name holds.
        let subject = SubjectTemplate { m: &f }.render()?;
        let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
        let text = TextTemplate { m: &f }.render()?;
        let html = HtmlTemplate {
            m: &f,
            subject: &subject,
        }
        .render()?;
        let calendar = (self.kind == Kind::BookingConfirmed)
            .then(|| (f.ics_name.clone(), self.calendar(domain)));
        Ok(Rendered {
            subject,
            text,
            html,
            calendar,
        })
    }

    /// The show as an iCalendar object (RFC 5545): one VEVENT, its UID the booking's.
    pub fn calendar(&self, domain: &str) -> String {
        let stamp = |t: DateTime<Utc>| t.format("%Y%m%dT%H%M%SZ").to_string();
        let lines = [
            "BEGIN:VCALENDAR".to_owned(),
            "VERSION:2.0".to_owned(),
            "PRODID:-//boxoffice//notifier//EN".to_owned(),
            "CALSCALE:GREGORIAN".to_owned(),
            "METHOD:PUBLISH".to_owned(),
            "BEGIN:VEVENT".to_owned(),
            format!("UID:booking-{}@{domain}", self.booking_id),
            format!("DTSTAMP:{}", stamp(self.recorded_at)),
            format!("DTSTART:{}", stamp(self.starts_at)),
            format!("DTEND:{}", stamp(self.ends_at)),
            format!("SUMMARY:{}", ics_text(&self.event_name)),
            format!(
                "LOCATION:{}",
                ics_text(&format!("{}, {}", self.venue, self.hall))
            ),
            format!(
                "DESCRIPTION:{}",
                ics_text(&format!(
                    "{} seat(s), booking {}",
                    self.seats, self.booking_id
                ))
            ),
            "STATUS:CONFIRMED".to_owned(),
            "END:VEVENT".to_owned(),
            "END:VCALENDAR".to_owned(),
        ];
        lines.iter().map(|line| fold(line)).collect()
    }
}

/// A file name for the calendar attachment: the event's name in safe characters.
fn calendar_file_name(event_name: &str) -> String {
    let mut name: String = event_name
        .chars()
        .map(|c| if c.is_alphanumeric() { c } else { '-' })
        .collect();
    name.truncate(60);
    let name = name.trim_matches('-');
    if name.is_empty() {
        "event.ics".to_owned()
    } else {
        format!("{name}.ics")
    }
}

/// A TEXT value of iCalendar: `\`, `;`, `,` and line breaks escaped.
fn ics_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// One content line, folded at 75 octets (never inside a character), ending in CRLF.
fn fold(line: &str) -> String {
    let mut out = String::with_capacity(line.len() + 8);
    let mut width = 0;
    for c in line.chars() {
        if width + c.len_utf8() > 75 {
            out.push_str("\r\n ");
            width = 1;
        }
        out.push(c);
        width += c.len_utf8();
    }
    out.push_str("\r\n");
    out
}

/// The message to `to` from `from`.
pub fn message(
    from: &Mailbox,
    to: Mailbox,
    message_id: String,
    rendered: Rendered,
) -> Result<Message, lettre::error::Error> {
    let body = MultiPart::alternative_plain_html(rendered.text, rendered.html);
    let body = match rendered.calendar {
        Some((name, calendar)) => MultiPart::mixed().multipart(body).singlepart(
            Attachment::new(name).body(
                calendar,
                ContentType::parse("text/calendar; charset=utf-8; method=PUBLISH")
                    .unwrap_or(ContentType::TEXT_PLAIN),
            ),
        ),
        None => body,
    };
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(rendered.subject)
        .message_id(Some(message_id))
        .multipart(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn view(kind: Kind) -> View {
        View {
            kind,
            customer: "Ada Lovelace".into(),
            booking_id: Uuid::nil(),
            event_name: "Swan <Lake>, the ballet; act \\1".into(),
            venue: "Olympia".into(),
            hall: "Main".into(),
            starts_at: Utc.with_ymd_and_hms(2027, 6, 5, 19, 30, 0).unwrap(),
            ends_at: Utc.with_ymd_and_hms(2027, 6, 5, 22, 0, 0).unwrap(),
            seats: 2,
            amount_cents: 15000,
            refunded_cents: 15000,
            currency: "EUR".into(),
            reason: None,
            organiser_note: None,
            was_confirmed: false,
            recorded_at: Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap(),
        }
    }

    #[test]
    fn a_confirmation_says_what_was_booked_and_carries_the_show() {
        let rendered = view(Kind::BookingConfirmed).render("example.com").unwrap();
        assert_eq!(
            rendered.subject,
            "Your tickets for Swan <Lake>, the ballet; act \\1 are confirmed"
        );
        for needle in [
            "Olympia, Main",
            "Saturday 5 June 2027, 19:30 UTC",
            "150.00 EUR",
        ] {
            assert!(
                rendered.text.contains(needle),
                "{needle} in {}",
                rendered.text
            );
        }
        // The HTML part escapes what came from people.
        assert!(
            rendered.html.contains("Swan &#60;Lake&#62;"),
            "{}",
            rendered.html
        );
        assert!(!rendered.html.contains("<Lake>"));
        let (name, ics) = rendered.calendar.unwrap();
        assert_eq!(name, "Swan--Lake---the-ballet--act--1.ics");
        assert!(ics.contains("DTSTART:20270605T193000Z\r\n"), "{ics}");
        assert!(
            ics.contains("SUMMARY:Swan <Lake>\\, the ballet\\; act \\\\1\r\n"),
            "{ics}"
        );
        assert!(ics.lines().all(|l| l.len() <= 75));
    }

    #[test]
    fn every_reason_and_outcome_is_said_in_words() {
        let mut rejected = view(Kind::BookingRejected);
        rejected.reason = Some(Reason::PaymentDeclined);
        let text = rejected.render("example.com").unwrap().text;
        assert!(text.contains("your card was declined"), "{text}");
        assert!(text.contains("not been charged"), "{text}");

        let mut cancelled = view(Kind::EventCancelled);
        cancelled.was_confirmed = true;
        cancelled.organiser_note = Some("The lead is ill".into());
        let rendered = cancelled.render("example.com").unwrap();
        assert!(
            rendered.text.contains("refunded 150.00 EUR"),
            "{}",
            rendered.text
        );
        assert!(
            rendered.text.contains("The lead is ill"),
            "{}",
            rendered.text
        );
        assert!(rendered.calendar.is_none());

        let pending = view(Kind::EventCancelled).render("example.com").unwrap();
        assert!(
            pending.text.contains("not been charged"),
            "{}",
            pending.text
        );
        assert!(!pending.text.contains("refunded"), "{}", pending.text);
    }

    #[test]
    fn long_calendar_lines_are_folded_and_amounts_read_as_money() {
        let folded = fold(&"x".repeat(200));
        assert!(folded.split("\r\n").all(|l| l.len() <= 75));
        assert_eq!(
            folded.replace("\r\n ", ""),
            format!("{}\r\n", "x".repeat(200))
        );
        assert_eq!(money(5, "EUR"), "0.05 EUR");
        assert_eq!(money(123_456, "GBP"), "1234.56 GBP");
        assert_eq!(
            message_id(Uuid::nil(), 3, "example.com"),
            "<booking-00000000-0000-0000-0000-000000000000.3@example.com>"
        );
    }
}
