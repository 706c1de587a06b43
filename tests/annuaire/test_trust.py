"""The trust space on both engines: import, DN pairing, refusals that keep the last good list."""

import hashlib
from datetime import timedelta

import pytest

from annuaire import trust
from annuaire.dn import parse_dn
from annuaire.whitelist_xml import WhitelistEntry, WhitelistError, render_whitelist

from factories import NOW

MIPIH = "CN=medimail-asip.mipih.fr,OU=1310000019,O=MIPIH,ST=Haute-Garonne (31),C=FR"
LIMOGES = 'CN=mx.chu-limoges.fr,OU=1870000000,O="C H U  DE  LIMOGES",ST=Haute-Vienne (87),C=FR'


def national(n: int = 40, *, extra: list[WhitelistEntry] | None = None) -> bytes:
    entries = [
        WhitelistEntry(f"ch-{i}.aura.mssante.fr", parse_dn(MIPIH), f"CH {i}") for i in range(n)
    ]
    entries += [
        WhitelistEntry("chu-limoges.mssante.fr", parse_dn(LIMOGES)),
        WhitelistEntry("chu-limoges.mssante.fr", parse_dn(MIPIH)),  # several DNs per domain
        WhitelistEntry("uc-cmp.mssante.fr", parse_dn("CN=mx.uc-cmp.fr,C=FR")),
        WhitelistEntry("xn--hpital-exemple-0ob.mssante.fr", parse_dn("CN=h.fr,C=FR")),
    ]
    return render_whitelist(entries + (extra or []), NOW)


def test_import_and_dn_pairing_after_normalisation(db):
    # covers: TS-2
    with db.transaction() as conn:
        generation = trust.import_list(conn, national(), source="liste.xml", now=NOW)
    assert generation.entry_count == 44 and generation.domain_count == 43
    assert not generation.domain_only and generation.generated_at == NOW
    with db.read() as conn:
        assert trust.is_listed(conn, "UC-CMP.mssante.fr")
        assert trust.is_listed(conn, "hôpital-exemple.mssante.fr")
        assert not trust.is_listed(conn, "aura.mssante.fr")
        assert len(trust.pairs_for(conn, "chu-limoges.mssante.fr")) == 2
        # Same DN written with other spacing, no-break spaces, case and attribute order.
        variant = (
            "c=FR, st=Haute-Vienne (87), o=C\u00a0H U DE LIMOGES, "
            "ou=1870000000, cn=MX.chu-limoges.fr"
        )
        assert trust.pair_matches(conn, "chu-limoges.mssante.fr", variant)
        assert trust.pair_matches(conn, "chu-limoges.mssante.fr", MIPIH)
        assert not trust.pair_matches(conn, "ch-1.aura.mssante.fr", LIMOGES)
        # Same CN, different DN: the audit case "cert-cn-diff-dn".
        assert not trust.pair_matches(
            conn, "chu-limoges.mssante.fr", "CN=mx.chu-limoges.fr,OU=1870000000,O=AUTRE,C=FR"
        )
        assert not trust.pair_matches(conn, "chu-limoges.mssante.fr", "garbage")


def test_a_truncated_but_complete_file_is_accepted(db):
    # covers: TS-2
    data = national().replace(b"</ListeBlancheMSSante>", b"").rstrip()
    data = data.replace(b"</ListeDomaines>", b"")
    with db.transaction() as conn:
        generation = trust.import_list(conn, data, source="cut.xml", now=NOW)
    assert generation.truncated and generation.entry_count == 44


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no entries|not XML|empty|UTF-8"),
        (b"<html><body>502 Bad Gateway</body></html>", "ListeBlancheMSSante"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", "neither XML"),
        (render_whitelist([], NOW), "no"),
    ],
    ids=["empty", "html error page", "binary", "no entries"],
)
def test_bad_lists_are_refused_and_the_last_good_list_stays(db, data, message):
    # covers: TS-2
    with db.transaction() as conn:
        good = trust.import_list(conn, national(), source="good", now=NOW)
    with (
        db.transaction() as conn,
        pytest.raises((trust.WhitelistRefused, WhitelistError), match=message),
    ):
        trust.import_list(conn, data, source="bad", now=NOW + timedelta(hours=1))
    with db.read() as conn:
        assert trust.active_generation(conn) == good
        assert trust.is_listed(conn, "ch-3.aura.mssante.fr")


def test_a_suspiciously_shrunken_list_is_refused(db):
    # covers: TS-2
    with db.transaction() as conn:
        trust.import_list(conn, national(40), source="good", now=NOW)
    with db.transaction() as conn, pytest.raises(trust.WhitelistRefused, match="smaller"):
        trust.import_list(conn, national(20), source="shrunk", now=NOW, max_shrink_percent=20)
    with db.transaction() as conn:  # a normal evolution passes
        generation = trust.import_list(conn, national(36), source="next", now=NOW)
    assert generation.entry_count == 40


def test_checksum_is_verified(db):
    # covers: TS-2
    data = national()
    with db.transaction() as conn, pytest.raises(trust.WhitelistRefused, match="checksum mismatch"):
        trust.import_list(conn, data, source="x", now=NOW, checksum="0" * 64)
    with db.transaction() as conn:
        generation = trust.import_list(
            conn, data, source="x", now=NOW, checksum=hashlib.sha256(data).hexdigest().upper()
        )
    assert generation.sha256 == hashlib.sha256(data).hexdigest()


def test_a_new_list_replaces_the_old_one_atomically_and_old_generations_are_pruned(db):
    with db.transaction() as conn:
        first = trust.import_list(conn, national(40), source="1", now=NOW)
        extra = [WhitelistEntry("nouveau.mssante.fr", parse_dn(MIPIH))]
        second = trust.import_list(conn, national(40, extra=extra), source="2", now=NOW)
        third = trust.import_list(conn, national(40), source="3", now=NOW)
    assert first.id < second.id < third.id
    with db.read() as conn:
        assert trust.active_generation(conn) == third
        assert not trust.is_listed(conn, "nouveau.mssante.fr")
        kept = conn.exec_driver_sql("SELECT count(*) FROM whitelist_generations").scalar()
    assert kept == trust.KEEP_PREVIOUS + 1


def test_a_plain_domain_list_makes_a_domain_only_trust_space(db):
    # covers: TS-2
    with db.transaction() as conn:
        generation = trust.import_list(
            conn, b"# private lab\nlabo-a.test\nLABO-B.test\n\n", source="lab.txt", now=NOW
        )
        assert generation.domain_only and generation.entry_count == 2
        assert trust.pair_matches(conn, "labo-b.test", "CN=anything")
        assert not trust.pair_matches(conn, "labo-c.test", "CN=anything")
        trust.import_list(conn, national(), source="national", now=NOW)
        with pytest.raises(trust.WhitelistRefused, match="private labs"):
            trust.import_list(conn, b"labo-a.test\n" * 60, source="lab.txt", now=NOW)
