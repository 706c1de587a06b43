# covers: MSSC-INIT-1, MSSC-INIT-2, MSSC-INIT-3, MSSC-FIN-1, MSSC-RET-1, MSSC-MDN-1
# covers: MSSC-TEST-1, MSSC-FROM-1, MSSC-NOTIF-1
"""policies.mssc: the citizen-messaging rules as pure decisions (facts in, effects out)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from annuaire.ins import ins_key
from annuaire.patients import Patient, PatientStatus
from policies.mssc import (
    REPLY_MARKER,
    AttachmentsCheck,
    Deliver,
    Drop,
    MessageFacts,
    Notify,
    SendAck,
    SendReturn,
    SetConversation,
    closes_exchange,
    decide_from_patient,
    decide_test_responder,
    decide_to_patient,
    mdn_recipient,
    notification_due,
    patient_display_name,
    professional_display_name,
)
from policies.texts import ReturnKind

_BODY = "2850775123456"
INS = _BODY + ins_key(_BODY)
PS = "dr.martin@hopital.mssante.fr"
SECRETARIAT = "secretariat@hopital.mssante.fr"
PATIENT_ADDRESS = f"{INS}@patient.mssante.fr"
CAP = 25 * 1024 * 1024
EMAIL = "jeanne.dupont@example.org"


def parse(raw: str | bytes) -> Message:
    """Headers as the queue runner reads them: compat32, headers only."""
    data = raw.encode() if isinstance(raw, str) else raw
    return BytesHeaderParser(policy=compat32).parsebytes(data)


def facts_from(raw: str | bytes, sender: str = PS, size: int = 1000) -> MessageFacts:
    return MessageFacts.from_headers(sender, parse(raw), size)


def ps_facts(**changes: object) -> MessageFacts:
    """A plain message from a professional: From set, no display name, not automatic."""
    values: dict[str, object] = {
        "envelope_sender": PS,
        "subject": "Résultats d'analyses",
        "from_addresses": (PS,),
        "from_name": "Dr Martin",
        "size": 10_000,
    }
    values.update(changes)
    return MessageFacts(**values)  # type: ignore[arg-type]


def patient(status: PatientStatus = PatientStatus.OPEN, email: str | None = EMAIL) -> Patient:
    return Patient(INS, status, "Jeanne", "Dupont", email, True)


def returns(effects: tuple[object, ...]) -> list[SendReturn]:
    return [e for e in effects if isinstance(e, SendReturn)]


def conversations(effects: tuple[object, ...]) -> list[SetConversation]:
    return [e for e in effects if isinstance(e, SetConversation)]


def delivers(effects: tuple[object, ...]) -> list[Deliver]:
    return [e for e in effects if isinstance(e, Deliver)]


# ------------------------------------------------------------------ MessageFacts.from_headers


class TestFromHeaders:
    def test_plain_headers(self) -> None:
        facts = facts_from(
            "From: Dr Martin <dr.martin@hopital.mssante.fr>\r\n"
            f"To: {PATIENT_ADDRESS}\r\n"
            "Subject: Compte rendu\r\n"
            "\r\n",
            size=4242,
        )
        assert facts.envelope_sender == PS
        assert facts.subject == "Compte rendu"
        assert facts.from_addresses == (PS,)
        assert facts.from_name == "Dr Martin"
        assert facts.size == 4242
        assert facts.reply_to == ()
        assert facts.disposition_notification_to == ()
        assert facts.automatic is False

    def test_rfc2047_subject_is_decoded(self) -> None:
        # "Résultats - FIN" in base64, split over a folded line with a Q-encoded word
        facts = facts_from(
            "Subject: =?utf-8?b?UsOpc3VsdGF0cw==?=\r\n =?utf-8?q?_-_FIN?=\r\n\r\n",
        )
        assert facts.subject == "Résultats - FIN"
        assert closes_exchange(facts)

    def test_rfc2047_subject_mixed_with_plain_text(self) -> None:
        facts = facts_from("Subject: Suivi =?iso-8859-1?q?d=E9finitif?=\r\n\r\n")
        assert facts.subject == "Suivi définitif"
        assert not closes_exchange(facts)

    def test_undecodable_encoded_word_is_kept(self) -> None:
        facts = facts_from("Subject: =?x-no-such-charset?q?abc?=\r\n\r\n")
        assert facts.subject == "=?x-no-such-charset?q?abc?="

    def test_raw_utf8_subject_is_decoded(self) -> None:
        facts = facts_from("Subject: Protocole testé\r\n\r\n".encode())
        assert facts.subject == "Protocole testé"
        assert decide_test_responder(facts, "TEST") != (SendAck(PS),)

    def test_missing_subject_is_empty(self) -> None:
        assert facts_from("From: a@b.fr\r\n\r\n").subject == ""

    def test_from_display_name_is_decoded(self) -> None:
        facts = facts_from(
            "From: =?utf-8?q?Dr_Ren=C3=A9e_Lef=C3=A8vre?= <renee.lefevre@chu.mssante.fr>\r\n\r\n"
        )
        assert facts.from_name == "Dr Renée Lefèvre"
        assert facts.from_addresses == ("renee.lefevre@chu.mssante.fr",)

    def test_from_quoted_display_name(self) -> None:
        facts = facts_from('From: "Martin, Paul (Dr)" <dr.martin@hopital.mssante.fr>\r\n\r\n')
        assert facts.from_name == "Martin, Paul (Dr)"
        assert facts.from_addresses == (PS,)

    def test_from_without_display_name(self) -> None:
        facts = facts_from(f"From: {PS}\r\n\r\n")
        assert facts.from_name == ""
        assert facts.from_addresses == (PS,)

    def test_from_angle_only(self) -> None:
        facts = facts_from(f"From: <{PS}>\r\n\r\n")
        assert facts.from_name == ""
        assert facts.from_addresses == (PS,)

    def test_several_from_addresses_name_is_the_first(self) -> None:
        facts = facts_from(f"From: Dr Martin <{PS}>, Secrétariat <{SECRETARIAT}>\r\n\r\n")
        assert facts.from_addresses == (PS, SECRETARIAT)
        assert facts.from_name == "Dr Martin"

    def test_no_from(self) -> None:
        facts = facts_from("Subject: x\r\n\r\n")
        assert facts.from_addresses == ()
        assert facts.from_name == ""

    def test_addresses_without_at_are_ignored(self) -> None:
        facts = facts_from("From: undisclosed-recipients:;\r\nReply-To: nobody\r\n\r\n")
        assert facts.from_addresses == ()
        assert facts.reply_to == ()

    def test_reply_to(self) -> None:
        facts = facts_from(
            f"From: Dr Martin <{PS}>\r\n"
            f"Reply-To: Secrétariat <{SECRETARIAT}>, other@clinique.mssante.fr\r\n\r\n"
        )
        assert facts.reply_to == (SECRETARIAT, "other@clinique.mssante.fr")
        assert facts.professional_addresses == (PS, SECRETARIAT, "other@clinique.mssante.fr")

    def test_disposition_notification_to(self) -> None:
        facts = facts_from(
            f"From: {PS}\r\nDisposition-Notification-To: Dr Martin <{PS}>\r\n\r\n",
        )
        assert facts.disposition_notification_to == (PS,)

    def test_x_mss_mes_is_stripped(self) -> None:
        facts = facts_from("X-MSS-MES:   fin \t\r\n\r\n")
        assert facts.x_mss_mes == "fin"
        assert closes_exchange(facts)

    def test_content_type_and_size(self) -> None:
        facts = facts_from(
            "Content-Type: multipart/mixed;\r\n boundary=abc\r\n\r\n",
            size=123,
        )
        assert facts.content_type.startswith("multipart/mixed")
        assert facts.size == 123


# ------------------------------------------------------------------ automatic mail


class TestAutomatic:
    def test_plain_message_is_not_automatic(self) -> None:
        assert facts_from(f"From: {PS}\r\nSubject: x\r\n\r\n").automatic is False

    def test_null_sender(self) -> None:
        assert facts_from(f"From: {PS}\r\n\r\n", sender="").automatic is True
        assert MessageFacts("").automatic is True

    @pytest.mark.parametrize(
        "value",
        [
            "auto-replied",
            "auto-generated",
            "Auto-Replied",
            "AUTO-GENERATED",
            "auto-replied; owner-email=x@y.fr",
            "auto-notified",
        ],
    )
    def test_auto_submitted(self, value: str) -> None:
        assert facts_from(f"From: {PS}\r\nAuto-Submitted: {value}\r\n\r\n").automatic is True

    @pytest.mark.parametrize("value", ["no", "No", "NO", " no ", "no; comment=1"])
    def test_auto_submitted_no_is_not_automatic(self, value: str) -> None:
        assert facts_from(f"From: {PS}\r\nAuto-Submitted: {value}\r\n\r\n").automatic is False

    def test_auto_submitted_no_with_comment_is_not_automatic(self) -> None:
        facts = facts_from(f"From: {PS}\r\nAuto-Submitted: no (sent by a person)\r\n\r\n")
        assert facts.automatic is False

    def test_empty_auto_submitted_is_not_automatic(self) -> None:
        assert facts_from(f"From: {PS}\r\nAuto-Submitted:\r\n\r\n").automatic is False

    @pytest.mark.parametrize("value", ["bulk", "junk", "list", "Bulk", "JUNK", " list "])
    def test_precedence_bulk_junk_list(self, value: str) -> None:
        assert facts_from(f"From: {PS}\r\nPrecedence: {value}\r\n\r\n").automatic is True

    @pytest.mark.parametrize("value", ["normal", "first-class", "urgent", "bulky", ""])
    def test_other_precedence_is_not_automatic(self, value: str) -> None:
        assert facts_from(f"From: {PS}\r\nPrecedence: {value}\r\n\r\n").automatic is False

    @pytest.mark.parametrize(
        "value",
        [
            "multipart/report; report-type=delivery-status; boundary=x",
            "Multipart/Report; report-type=disposition-notification",
            "multipart/report",
        ],
    )
    def test_multipart_report(self, value: str) -> None:
        assert facts_from(f"From: {PS}\r\nContent-Type: {value}\r\n\r\n").automatic is True

    @pytest.mark.parametrize(
        "value", ["multipart/mixed; boundary=x", "text/plain; charset=utf-8", "message/rfc822"]
    )
    def test_other_content_types_are_not_automatic(self, value: str) -> None:
        assert facts_from(f"From: {PS}\r\nContent-Type: {value}\r\n\r\n").automatic is False

    def test_professional_addresses_fall_back_to_envelope_sender(self) -> None:
        assert MessageFacts(PS).professional_addresses == (PS,)
        assert MessageFacts("").professional_addresses == ()


# ------------------------------------------------------------------ MSSC-FIN-1


class TestClosesExchange:
    @pytest.mark.parametrize(
        "subject",
        [
            "FIN",
            "fin",
            "Fin",
            "fin de suivi",
            "Suivi - Fin.",
            "[FIN]",
            "Re: Résultats FIN",
            "FIN: compte rendu",
            "(fin)",
            "Suivi/FIN",
            "«FIN»",
        ],
    )
    def test_fin_as_a_word_closes(self, subject: str) -> None:
        assert closes_exchange(MessageFacts(PS, subject=subject)) is True

    @pytest.mark.parametrize(
        "subject",
        [
            "FINESS 750000000",
            "Résultat final",
            "enfin",
            "fine",
            "Définition",
            "finir le traitement",
            "affiner",
            "FIN2",
            "FIN_SUIVI",
            "finé",
            "",
            "F I N",
        ],
    )
    def test_fin_inside_a_word_does_not_close(self, subject: str) -> None:
        assert closes_exchange(MessageFacts(PS, subject=subject)) is False

    @pytest.mark.parametrize("value", ["FIN", "fin", "Fin", "  FIN  ", "\tfin"])
    def test_x_mss_mes_header(self, value: str) -> None:
        facts = facts_from(f"Subject: Compte rendu\r\nX-MSS-MES: {value}\r\n\r\n")
        assert closes_exchange(facts) is True

    @pytest.mark.parametrize("value", ["", "FINESS", "OUVERT", "FIN FIN", "NOFIN"])
    def test_other_x_mss_mes_values(self, value: str) -> None:
        facts = facts_from(f"Subject: Compte rendu\r\nX-MSS-MES: {value}\r\n\r\n")
        assert closes_exchange(facts) is False

    def test_fin_in_encoded_subject(self) -> None:
        facts = facts_from("Subject: =?utf-8?q?Suivi_termin=C3=A9_-_FIN?=\r\n\r\n")
        assert closes_exchange(facts) is True


# ------------------------------------------------------------------ decide_to_patient


class TestDecideToPatient:
    def test_open_space_delivers_and_opens_the_conversation(self) -> None:
        effects = decide_to_patient(ps_facts(), patient(), size_cap=CAP, notify=False)
        assert effects == (
            SetConversation(PS, INS, open=True),
            Deliver(reply_marker="allowed", display_name=None),
        )

    def test_reply_marker_header_name(self) -> None:
        assert REPLY_MARKER == "X-MSSante-Patient-Reply"

    def test_from_and_reply_to_get_a_conversation_deduplicated_case_insensitively(
        self,
    ) -> None:
        facts = ps_facts(
            from_addresses=(PS, SECRETARIAT),
            reply_to=(SECRETARIAT.upper(), "Dr.Martin@Hopital.MSSante.fr", "other@c.fr"),
        )
        effects = decide_to_patient(facts, patient(), size_cap=CAP, notify=False)
        convs = conversations(effects)
        assert [c.professional.lower() for c in convs] == [PS, SECRETARIAT, "other@c.fr"]
        assert all(c.ins == INS and c.open for c in convs)
        assert len(delivers(effects)) == 1

    def test_without_from_the_envelope_sender_gets_the_conversation(self) -> None:
        facts = ps_facts(from_addresses=(), from_name="")
        effects = decide_to_patient(facts, patient(), size_cap=CAP, notify=False)
        assert conversations(effects) == [SetConversation(PS, INS, open=True)]
        assert delivers(effects) == [Deliver(reply_marker="allowed", display_name=None)]

    def test_notify_when_allowed_and_email_known(self) -> None:
        effects = decide_to_patient(ps_facts(), patient(), size_cap=CAP, notify=True)
        assert Notify(INS, EMAIL) in effects
        assert effects.count(Notify(INS, EMAIL)) == 1

    def test_no_notify_when_not_due(self) -> None:
        effects = decide_to_patient(ps_facts(), patient(), size_cap=CAP, notify=False)
        assert not any(isinstance(e, Notify) for e in effects)

    @pytest.mark.parametrize("email", [None, ""])
    def test_no_notify_without_an_email(self, email: str | None) -> None:
        effects = decide_to_patient(ps_facts(), patient(email=email), size_cap=CAP, notify=True)
        assert not any(isinstance(e, Notify) for e in effects)
        assert len(delivers(effects)) == 1

    @pytest.mark.parametrize("subject", ["FIN", "Suivi - fin.", "[Fin] Compte rendu"])
    def test_fin_closes_the_conversation_and_marks_the_message(self, subject: str) -> None:
        facts = ps_facts(subject=subject, reply_to=(SECRETARIAT,))
        effects = decide_to_patient(facts, patient(), size_cap=CAP, notify=False)
        assert conversations(effects) == [
            SetConversation(PS, INS, open=False),
            SetConversation(SECRETARIAT, INS, open=False),
        ]
        assert delivers(effects) == [Deliver(reply_marker="closed", display_name=None)]
        assert not returns(effects)

    def test_x_mss_mes_fin_closes(self) -> None:
        facts = ps_facts(x_mss_mes="FIN")
        effects = decide_to_patient(facts, patient(), size_cap=CAP, notify=False)
        assert conversations(effects) == [SetConversation(PS, INS, open=False)]
        assert delivers(effects)[0].reply_marker == "closed"

    def test_fin_still_notifies(self) -> None:
        effects = decide_to_patient(ps_facts(subject="FIN"), patient(), size_cap=CAP, notify=True)
        assert Notify(INS, EMAIL) in effects

    def test_closed_space_returns_closed_to_the_sender(self) -> None:
        facts = ps_facts(from_addresses=(SECRETARIAT,), reply_to=("other@c.fr",))
        effects = decide_to_patient(facts, patient(PatientStatus.CLOSED), size_cap=CAP, notify=True)
        assert effects == (SendReturn(ReturnKind.CLOSED, PS),)

    @pytest.mark.parametrize("status", [PatientStatus.NOT_CREATED, PatientStatus.OPPOSED])
    def test_not_created_and_opposed_return_not_found(self, status: PatientStatus) -> None:
        effects = decide_to_patient(ps_facts(), patient(status), size_cap=CAP, notify=True)
        assert effects == (SendReturn(ReturnKind.NOT_FOUND, PS),)

    def test_not_created_and_opposed_are_indistinguishable(self) -> None:
        # the sender must not learn which (MSSC-RET-1): same effects, same reason text
        for facts in (ps_facts(), ps_facts(envelope_sender=""), ps_facts(subject="FIN")):
            not_created = decide_to_patient(
                facts, patient(PatientStatus.NOT_CREATED), size_cap=CAP, notify=True
            )
            opposed = decide_to_patient(
                facts, patient(PatientStatus.OPPOSED), size_cap=CAP, notify=True
            )
            assert not_created == opposed
        # an unknown INS is a bare not-created record
        bare = Patient(INS, PatientStatus.NOT_CREATED)
        assert decide_to_patient(ps_facts(), bare, size_cap=CAP, notify=True) == (
            SendReturn(ReturnKind.NOT_FOUND, PS),
        )

    def test_over_the_cap_returns_too_big(self) -> None:
        effects = decide_to_patient(ps_facts(size=CAP + 1), patient(), size_cap=CAP, notify=True)
        assert effects == (SendReturn(ReturnKind.TOO_BIG, PS),)

    def test_exactly_the_cap_is_delivered(self) -> None:
        effects = decide_to_patient(ps_facts(size=CAP), patient(), size_cap=CAP, notify=False)
        assert len(delivers(effects)) == 1
        assert not returns(effects)

    @pytest.mark.parametrize(
        "status", [PatientStatus.CLOSED, PatientStatus.NOT_CREATED, PatientStatus.OPPOSED]
    )
    def test_size_is_checked_before_status(self, status: PatientStatus) -> None:
        effects = decide_to_patient(
            ps_facts(size=CAP + 1), patient(status), size_cap=CAP, notify=False
        )
        assert effects == (SendReturn(ReturnKind.TOO_BIG, PS),)

    @pytest.mark.parametrize(
        "automatic",
        [
            {"envelope_sender": ""},
            {"auto_submitted": "auto-replied"},
            {"auto_submitted": "auto-generated"},
            {"precedence": "bulk"},
            {"content_type": "multipart/report; report-type=delivery-status"},
        ],
    )
    @pytest.mark.parametrize(
        ("status", "size"),
        [
            (PatientStatus.CLOSED, 100),
            (PatientStatus.NOT_CREATED, 100),
            (PatientStatus.OPPOSED, 100),
            (PatientStatus.OPEN, CAP + 1),
            (PatientStatus.CLOSED, CAP + 1),
        ],
    )
    def test_automatic_mail_that_would_get_a_return_is_dropped(
        self, automatic: dict[str, str], status: PatientStatus, size: int
    ) -> None:
        facts = ps_facts(size=size, **automatic)
        assert facts.automatic
        effects = decide_to_patient(facts, patient(status), size_cap=CAP, notify=True)
        assert len(effects) == 1
        assert isinstance(effects[0], Drop)
        assert effects[0].reason  # logged, so never empty

    @pytest.mark.parametrize(
        "automatic",
        [
            {"envelope_sender": ""},
            {"auto_submitted": "auto-replied"},
            {"precedence": "list"},
            {"content_type": "multipart/report; report-type=disposition-notification"},
        ],
    )
    def test_automatic_mail_to_an_open_space_is_delivered_without_conversation(
        self, automatic: dict[str, str]
    ) -> None:
        facts = ps_facts(reply_to=(SECRETARIAT,), **automatic)
        effects = decide_to_patient(facts, patient(), size_cap=CAP, notify=False)
        assert conversations(effects) == []
        assert delivers(effects) == [Deliver(reply_marker="allowed", display_name=None)]
        assert not returns(effects)

    def test_automatic_fin_does_not_close_the_conversation(self) -> None:
        facts = ps_facts(subject="FIN", auto_submitted="auto-generated")
        effects = decide_to_patient(facts, patient(), size_cap=CAP, notify=False)
        assert conversations(effects) == []
        assert len(delivers(effects)) == 1

    def test_display_name_is_the_local_part_when_from_has_none(self) -> None:
        facts = ps_facts(from_name="")
        effects = decide_to_patient(facts, patient(), size_cap=CAP, notify=False)
        assert delivers(effects) == [Deliver(reply_marker="allowed", display_name="dr.martin")]

    def test_display_name_is_none_when_from_has_one(self) -> None:
        effects = decide_to_patient(ps_facts(), patient(), size_cap=CAP, notify=False)
        assert delivers(effects)[0].display_name is None

    def test_display_name_from_parsed_headers(self) -> None:
        bare = facts_from(f"From: {PS}\r\nSubject: x\r\n\r\n")
        named = facts_from(f"From: =?utf-8?q?Dr_Martin?= <{PS}>\r\nSubject: x\r\n\r\n")
        assert delivers(decide_to_patient(bare, patient(), size_cap=CAP, notify=False)) == [
            Deliver(reply_marker="allowed", display_name="dr.martin")
        ]
        assert delivers(decide_to_patient(named, patient(), size_cap=CAP, notify=False)) == [
            Deliver(reply_marker="allowed", display_name=None)
        ]

    def test_end_to_end_from_headers(self) -> None:
        facts = facts_from(
            f"From: Dr Martin <{PS}>\r\n"
            f"Reply-To: {SECRETARIAT}\r\n"
            f"To: {PATIENT_ADDRESS}\r\n"
            "Subject: =?utf-8?q?Suivi_post-op=C3=A9ratoire_=5BFIN=5D?=\r\n"
            "\r\n"
        )
        effects = decide_to_patient(facts, patient(), size_cap=CAP, notify=True)
        assert effects == (
            SetConversation(PS, INS, open=False),
            SetConversation(SECRETARIAT, INS, open=False),
            Deliver(reply_marker="closed", display_name=None),
            Notify(INS, EMAIL),
        )


# ------------------------------------------------------------------ decide_from_patient


PATIENT_SENDER = PATIENT_ADDRESS
OK = AttachmentsCheck(acceptable=True)
BAD = AttachmentsCheck(acceptable=False)


def from_patient(
    facts: MessageFacts | None = None,
    *,
    recipient_is_patient: bool = False,
    conversation: bool | None = True,
    pharmacy: bool = False,
    attachments: AttachmentsCheck = OK,
) -> tuple[object, ...]:
    return decide_from_patient(
        facts if facts is not None else MessageFacts(PATIENT_SENDER, subject="Re: résultats"),
        recipient_is_patient=recipient_is_patient,
        conversation=conversation,
        pharmacy_accepts_patients=pharmacy,
        attachments=attachments,
    )


class TestDecideFromPatient:
    def test_open_conversation_delivers(self) -> None:
        assert from_patient(conversation=True) == (Deliver(),)

    def test_delivery_from_a_patient_has_no_marker(self) -> None:
        (deliver,) = from_patient(conversation=True)
        assert isinstance(deliver, Deliver)
        assert deliver.reply_marker is None

    @pytest.mark.parametrize("conversation", [True, False, None])
    def test_pharmacy_accepting_patients_delivers_even_without_conversation(
        self, conversation: bool | None
    ) -> None:
        assert from_patient(conversation=conversation, pharmacy=True) == (Deliver(),)

    def test_closed_conversation_returns_conversation_closed(self) -> None:
        assert from_patient(conversation=False) == (
            SendReturn(ReturnKind.CONVERSATION_CLOSED, PATIENT_SENDER),
        )

    def test_never_opened_returns_not_initiated(self) -> None:
        assert from_patient(conversation=None) == (
            SendReturn(ReturnKind.NOT_INITIATED, PATIENT_SENDER),
        )

    @pytest.mark.parametrize("conversation", [True, False, None])
    @pytest.mark.parametrize("pharmacy", [True, False])
    @pytest.mark.parametrize("attachments", [OK, BAD])
    def test_patient_to_patient_is_always_refused(
        self, conversation: bool | None, pharmacy: bool, attachments: AttachmentsCheck
    ) -> None:
        effects = from_patient(
            recipient_is_patient=True,
            conversation=conversation,
            pharmacy=pharmacy,
            attachments=attachments,
        )
        assert effects == (SendReturn(ReturnKind.PATIENT_TO_PATIENT, PATIENT_SENDER),)

    @pytest.mark.parametrize("conversation", [True, False, None])
    @pytest.mark.parametrize("pharmacy", [True, False])
    def test_bad_attachments_are_refused(self, conversation: bool | None, pharmacy: bool) -> None:
        effects = from_patient(conversation=conversation, pharmacy=pharmacy, attachments=BAD)
        assert effects == (SendReturn(ReturnKind.ATTACHMENT_REFUSED, PATIENT_SENDER),)

    def test_returns_go_to_the_envelope_sender_not_from_or_reply_to(self) -> None:
        facts = MessageFacts(
            PATIENT_SENDER,
            from_addresses=("someone.else@example.org",),
            reply_to=("another@example.org",),
        )
        for kwargs in (
            {"recipient_is_patient": True},
            {"attachments": BAD},
            {"conversation": False},
            {"conversation": None},
        ):
            (effect,) = from_patient(facts, **kwargs)  # type: ignore[arg-type]
            assert isinstance(effect, SendReturn)
            assert effect.to == PATIENT_SENDER

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"recipient_is_patient": True},
            {"attachments": BAD},
            {"conversation": False},
            {"conversation": None},
        ],
    )
    @pytest.mark.parametrize(
        "facts",
        [
            MessageFacts(""),
            MessageFacts(PATIENT_SENDER, auto_submitted="auto-replied"),
            MessageFacts(PATIENT_SENDER, precedence="junk"),
            MessageFacts(PATIENT_SENDER, content_type="multipart/report; report-type=x"),
        ],
    )
    def test_automatic_mail_is_dropped_never_answered(
        self, facts: MessageFacts, kwargs: dict[str, object]
    ) -> None:
        effects = from_patient(facts, **kwargs)  # type: ignore[arg-type]
        assert len(effects) == 1
        assert isinstance(effects[0], Drop)


# ------------------------------------------------------------------ MSSC-TEST-1


class TestTestResponder:
    @pytest.mark.parametrize(
        ("subject", "body"),
        [
            ("TEST", "TEST"),
            ("test", "Ceci est un test."),
            ("[Test] messagerie", "Bonjour,\nmessage de TEST\n"),
            ("Re: test de connexion", "test"),
        ],
    )
    def test_test_in_subject_and_body_is_acknowledged(self, subject: str, body: str) -> None:
        facts = MessageFacts(PS, subject=subject)
        assert decide_test_responder(facts, body) == (SendAck(PS),)

    @pytest.mark.parametrize(
        ("subject", "body"),
        [
            ("TEST", ""),
            ("TEST", "Bonjour"),
            ("Bonjour", "TEST"),
            ("", ""),
            ("TESTING", "TEST"),
            ("TEST", "attestation"),
            ("contest", "test"),
            ("TEST", "tests"),
            ("TEST_1", "TEST"),
        ],
    )
    def test_test_missing_from_one_is_dropped(self, subject: str, body: str) -> None:
        effects = decide_test_responder(MessageFacts(PS, subject=subject), body)
        assert len(effects) == 1
        assert isinstance(effects[0], Drop)

    def test_ack_goes_to_the_envelope_sender(self) -> None:
        facts = MessageFacts(PS, subject="TEST", from_addresses=("x@y.fr",), reply_to=("z@y.fr",))
        assert decide_test_responder(facts, "TEST") == (SendAck(PS),)

    @pytest.mark.parametrize(
        "facts",
        [
            MessageFacts("", subject="TEST"),
            MessageFacts(PS, subject="TEST", auto_submitted="auto-replied"),
            MessageFacts(PS, subject="TEST", precedence="bulk"),
            MessageFacts(PS, subject="TEST", content_type="multipart/report"),
        ],
    )
    def test_automatic_mail_is_dropped(self, facts: MessageFacts) -> None:
        effects = decide_test_responder(facts, "TEST")
        assert len(effects) == 1
        assert isinstance(effects[0], Drop)

    def test_encoded_subject(self) -> None:
        facts = facts_from("Subject: =?utf-8?q?Message_de_TEST?=\r\n\r\n")
        assert decide_test_responder(facts, "test") == (SendAck(PS),)


# ------------------------------------------------------------------ MSSC-MDN-1


class TestMdnRecipient:
    def facts(self, **changes: object) -> MessageFacts:
        values: dict[str, object] = {
            "envelope_sender": PS,
            "disposition_notification_to": (PS, SECRETARIAT),
        }
        values.update(changes)
        return MessageFacts(**values)  # type: ignore[arg-type]

    def test_first_dnt_address(self) -> None:
        assert mdn_recipient(self.facts(), delivered=True, already_sent=False) == PS

    def test_not_delivered(self) -> None:
        assert mdn_recipient(self.facts(), delivered=False, already_sent=False) is None

    def test_already_sent(self) -> None:
        assert mdn_recipient(self.facts(), delivered=True, already_sent=True) is None

    def test_no_dnt(self) -> None:
        facts = self.facts(disposition_notification_to=())
        assert mdn_recipient(facts, delivered=True, already_sent=False) is None

    @pytest.mark.parametrize(
        "changes",
        [
            {"envelope_sender": ""},
            {"auto_submitted": "auto-replied"},
            {"precedence": "list"},
            {"content_type": "multipart/report; report-type=disposition-notification"},
        ],
    )
    def test_automatic(self, changes: dict[str, str]) -> None:
        facts = self.facts(**changes)
        assert mdn_recipient(facts, delivered=True, already_sent=False) is None

    def test_from_headers(self) -> None:
        facts = facts_from(
            f"From: Dr Martin <{PS}>\r\nDisposition-Notification-To: <{SECRETARIAT}>\r\n\r\n"
        )
        assert mdn_recipient(facts, delivered=True, already_sent=False) == SECRETARIAT

    def test_mdn_for_an_mdn_is_never_sent(self) -> None:
        facts = facts_from(
            f"From: {PS}\r\n"
            f"Disposition-Notification-To: {PS}\r\n"
            "Content-Type: multipart/report; report-type=disposition-notification;\r\n"
            ' boundary="b"\r\n\r\n'
        )
        assert mdn_recipient(facts, delivered=True, already_sent=False) is None


# ------------------------------------------------------------------ MSSC-NOTIF-1


class TestNotificationDue:
    NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    WINDOW = timedelta(hours=1)

    def test_never_notified(self) -> None:
        assert notification_due(None, self.NOW, self.WINDOW) is True

    def test_within_the_window(self) -> None:
        assert notification_due(self.NOW - timedelta(minutes=59), self.NOW, self.WINDOW) is False
        assert notification_due(self.NOW, self.NOW, self.WINDOW) is False

    def test_exactly_the_window(self) -> None:
        assert notification_due(self.NOW - self.WINDOW, self.NOW, self.WINDOW) is True

    def test_after_the_window(self) -> None:
        assert notification_due(self.NOW - timedelta(days=2), self.NOW, self.WINDOW) is True

    def test_zero_window_always_due(self) -> None:
        assert notification_due(self.NOW, self.NOW, timedelta(0)) is True


# ------------------------------------------------------------------ MSSC-FROM-1


class TestDisplayNames:
    @pytest.mark.parametrize(
        ("first", "last", "expected"),
        [
            ("Jeanne", "Dupont", "Jeanne Dupont"),
            ("  Jeanne ", " Dupont  ", "Jeanne Dupont"),
            ("Jeanne", None, "Jeanne"),
            (None, "Dupont", "Dupont"),
            ("", "Dupont", "Dupont"),
            ("   ", "Dupont", "Dupont"),
            (None, None, None),
            ("", "  ", None),
            ("Marie-Hélène", "Lefèvre", "Marie-Hélène Lefèvre"),
        ],
    )
    def test_patient_display_name(
        self, first: str | None, last: str | None, expected: str | None
    ) -> None:
        assert patient_display_name(Patient(INS, PatientStatus.OPEN, first, last)) == expected

    @pytest.mark.parametrize(
        ("display", "address", "expected"),
        [
            ("Dr Martin", PS, "Dr Martin"),
            ("  Dr Martin  ", PS, "Dr Martin"),
            (None, PS, "dr.martin"),
            ("", PS, "dr.martin"),
            ("   ", PS, "dr.martin"),
            (None, '"odd@local"@hopital.fr', '"odd@local"'),
            (None, "no-domain", "no-domain"),
        ],
    )
    def test_professional_display_name(
        self, display: str | None, address: str, expected: str
    ) -> None:
        assert professional_display_name(display, address) == expected


# ------------------------------------------------------------------ properties

_ADDRESSES = st.sampled_from([PS, SECRETARIAT, "Dr.Martin@Hopital.MSSante.fr", "x@y.fr"])

_FACTS = st.builds(
    MessageFacts,
    envelope_sender=st.sampled_from(["", PS, "other@clinique.mssante.fr"]),
    subject=st.one_of(
        st.text(max_size=40),
        st.sampled_from(["FIN", "fin de suivi", "FINESS", "enfin", "[Fin]", "TEST"]),
    ),
    x_mss_mes=st.sampled_from(["", "FIN", "fin", "other"]),
    auto_submitted=st.sampled_from(["", "no", "No", "auto-replied", "auto-generated; x=y"]),
    precedence=st.sampled_from(["", "normal", "bulk", "junk", "list", "List"]),
    content_type=st.sampled_from(
        ["", "text/plain", "multipart/mixed; boundary=x", "multipart/report; report-type=x"]
    ),
    size=st.integers(min_value=0, max_value=2 * CAP),
    from_addresses=st.lists(_ADDRESSES, max_size=3).map(tuple),
    from_name=st.sampled_from(["", "Dr Martin"]),
    reply_to=st.lists(_ADDRESSES, max_size=3).map(tuple),
    disposition_notification_to=st.lists(_ADDRESSES, max_size=2).map(tuple),
)
_PATIENTS = st.builds(
    Patient,
    ins=st.just(INS),
    status=st.sampled_from(list(PatientStatus)),
    first_name=st.one_of(st.none(), st.text(max_size=10)),
    last_name=st.one_of(st.none(), st.text(max_size=10)),
    notification_email=st.sampled_from([None, "", EMAIL]),
)


@settings(max_examples=500, deadline=None)
@given(facts=_FACTS, who=_PATIENTS, notify=st.booleans())
def test_decide_to_patient_properties(facts: MessageFacts, who: Patient, notify: bool) -> None:
    effects = decide_to_patient(facts, who, size_cap=CAP, notify=notify)
    sent = returns(effects)
    delivered = delivers(effects)
    dropped = [e for e in effects if isinstance(e, Drop)]

    # exactly one outcome: delivered, returned or dropped
    assert not (delivered and sent)
    assert len(delivered) + len(sent) + len(dropped) == 1
    # never an automatic return to automatic mail (RFC 3834), always to the envelope sender
    if facts.automatic:
        assert not sent
    assert all(r.to == facts.envelope_sender for r in sent)
    # only an open space under the cap is delivered to
    if delivered:
        assert who.status is PatientStatus.OPEN
        assert facts.size <= CAP
        assert delivered[0].reply_marker == ("closed" if closes_exchange(facts) else "allowed")
    else:
        assert not conversations(effects)
        assert not any(isinstance(e, Notify) for e in effects)
    # conversations only for mail a professional wrote, once per address, all the same way
    convs = conversations(effects)
    if facts.automatic:
        assert not convs
    keys = [c.professional.lower() for c in convs]
    assert len(keys) == len(set(keys))
    assert all(c.ins == who.ins and c.open is not closes_exchange(facts) for c in convs)
    # a notification only when allowed and an address is known
    if any(isinstance(e, Notify) for e in effects):
        assert notify
        assert who.notification_email


@settings(max_examples=300, deadline=None)
@given(
    facts=_FACTS,
    recipient_is_patient=st.booleans(),
    conversation=st.sampled_from([True, False, None]),
    pharmacy=st.booleans(),
    acceptable=st.booleans(),
)
def test_decide_from_patient_properties(
    facts: MessageFacts,
    recipient_is_patient: bool,
    conversation: bool | None,
    pharmacy: bool,
    acceptable: bool,
) -> None:
    effects = decide_from_patient(
        facts,
        recipient_is_patient=recipient_is_patient,
        conversation=conversation,
        pharmacy_accepts_patients=pharmacy,
        attachments=AttachmentsCheck(acceptable),
    )
    assert len(effects) == 1
    (effect,) = effects
    if isinstance(effect, Deliver):
        assert not recipient_is_patient
        assert acceptable
        assert conversation or pharmacy
    elif isinstance(effect, SendReturn):
        assert not facts.automatic
        assert effect.to == facts.envelope_sender
    else:
        assert isinstance(effect, Drop)
        assert facts.automatic
