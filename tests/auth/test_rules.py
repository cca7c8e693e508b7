"""Registration rules: usernames, passwords, email, display names."""

from __future__ import annotations

import pytest

from auth_svc import rules
from authgate_common.errors import InvalidArgument


@pytest.mark.parametrize("username", ["abc", "Alice", "a.b_c-d", "x" * 64, "007", "A-1"])
def test_valid_usernames_are_accepted(username: str) -> None:
    assert rules.check_username(username) == username


@pytest.mark.parametrize(
    "username",
    [
        "",
        "ab",
        "x" * 65,
        "with space",
        "tab\t",
        "new\nline",
        "ümlaut",
        "a@b",
        "abc\n",
        "\uff41\uff42\uff43",
    ],
)
def test_invalid_usernames_are_refused(username: str) -> None:
    with pytest.raises(InvalidArgument, match="username must be 3 to 64"):
        rules.check_username(username)


def test_username_is_normalized_to_lower_case() -> None:
    assert rules.normalize_username("AlIcE.X") == "alice.x"


def test_password_of_minimum_length_is_accepted() -> None:
    assert rules.check_password("p" * 12, username="bob", min_length=12) == "p" * 12


def test_password_of_maximum_length_is_accepted() -> None:
    assert len(rules.check_password("p" * 128, username="bob", min_length=12)) == 128


@pytest.mark.parametrize("password", ["p" * 11, "p" * 129, ""])
def test_password_outside_length_bounds_is_refused(password: str) -> None:
    with pytest.raises(InvalidArgument, match="password must be 12 to 128 characters"):
        rules.check_password(password, username="bob", min_length=12)


def test_password_is_checked_untrimmed_so_spaces_count() -> None:
    padded = "  short pw  "  # 12 characters only with its spaces
    assert rules.check_password(padded, username="bob", min_length=12) == padded


def test_password_length_counts_characters_not_bytes() -> None:
    assert rules.check_password("ü" * 12, username="bob", min_length=12) == "ü" * 12


def test_minimum_password_length_is_configurable() -> None:
    with pytest.raises(InvalidArgument, match="password must be 16 to 128"):
        rules.check_password("p" * 15, username="bob", min_length=16)


@pytest.mark.parametrize("password", ["alice1234567", "my-ALICE-password", "xxAlIcExxxxxxx"])
def test_password_containing_the_username_in_any_case_is_refused(password: str) -> None:
    with pytest.raises(InvalidArgument, match="must not contain the username"):
        rules.check_password(password, username="Alice", min_length=12)


def test_password_equal_to_the_username_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="must not contain the username"):
        rules.check_password("alice.liddell", username="Alice.Liddell", min_length=12)


def test_password_error_never_echoes_the_password() -> None:
    with pytest.raises(InvalidArgument) as raised:
        rules.check_password("hunter2-secret", username="hunter2", min_length=12)
    assert "hunter2-secret" not in raised.value.message


@pytest.mark.parametrize("email", ["a@example.com", "first.last+tag@sub.example.org"])
def test_plausible_email_is_accepted(email: str) -> None:
    assert rules.check_email(email) == email


def test_empty_email_means_none() -> None:
    assert rules.check_email("") is None


@pytest.mark.parametrize(
    "email",
    [
        "plain",
        "a@b",
        "a@@b.com",
        "a b@c.com",
        "@example.com",
        "a@example.com\n",
        "a@" + "x" * 250 + ".com",
        "a@.com",
    ],
)
def test_implausible_email_is_refused(email: str) -> None:
    with pytest.raises(InvalidArgument, match="email must be"):
        rules.check_email(email)


def test_display_name_is_trimmed_and_empty_means_none() -> None:
    assert rules.check_display_name("  Alice  ") == "Alice"
    assert rules.check_display_name("   ") is None


@pytest.mark.parametrize("name", ["x" * 101, "bell\x07", "new\nline"])
def test_bad_display_name_is_refused(name: str) -> None:
    with pytest.raises(InvalidArgument, match="display_name must be"):
        rules.check_display_name(name)


COMMON = frozenset({"qwerty123456", "iloveyou1234"})


@pytest.mark.parametrize("password", ["qwerty123456", "QWERTY123456", "ILoveYou1234"])
def test_common_password_is_refused_in_any_case(password: str) -> None:
    with pytest.raises(InvalidArgument, match="password is too common") as raised:
        rules.check_password(password, username="bob", min_length=12, common_passwords=COMMON)
    assert password not in str(raised.value)


def test_uncommon_password_passes_the_list_check() -> None:
    password = "qwerty1234567"
    assert rules.check_password(
        password, username="bob", min_length=12, common_passwords=COMMON
    ) == (password)


@pytest.mark.parametrize("password", ["Alice.Smith!", "xxalice.smithxx", "ALICE.SMITH-2024"])
def test_password_equal_to_or_containing_the_username_is_refused(password: str) -> None:
    with pytest.raises(InvalidArgument, match="must not contain the username"):
        rules.check_password(password, username="alice.smith", min_length=12)


def test_no_composition_rules_apply() -> None:
    # NIST 800-63B: no required digits, capitals or symbols.
    password = "all lower case words"
    assert rules.check_password(password, username="bob", min_length=12) == password


LISTED = frozenset({rules.comparison_form("password1234")})


@pytest.mark.parametrize(
    "password",
    [
        "password1234",
        "password1234 ",
        " password1234",
        "\tpassword1234\n",
        "pass word1234",
        "PassWord1234",
        "\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44\uff11\uff12\uff13\uff14",  # full-width
        "\uff30\uff21\uff33\uff33\uff37\uff2f\uff32\uff24\uff11\uff12\uff13\uff14 ",
    ],
)
def test_common_password_variants_compare_in_their_normal_form(password: str) -> None:
    with pytest.raises(InvalidArgument, match="password is too common") as raised:
        rules.check_password(password, username="bob", min_length=12, common_passwords=LISTED)
    assert password not in str(raised.value)


@pytest.mark.parametrize(
    "password",
    [
        "my alice password",
        "my a l i c e password",
        "my \uff41\uff4c\uff49\uff43\uff45 password",  # full-width "alice"
    ],
)
def test_password_containing_the_username_in_any_form_is_refused(password: str) -> None:
    with pytest.raises(InvalidArgument, match="must not contain the username"):
        rules.check_password(password, username="Alice", min_length=12)


def test_the_comparison_form_is_nfkc_case_folded_without_whitespace() -> None:
    assert rules.comparison_form(" \uff30ass Wor\u00df\u2003") == "passworss"


def test_the_password_is_kept_as_received_even_when_compared_normalized() -> None:
    password = " \uff41 phrase nobody else uses "
    assert rules.check_password(password, username="bob", min_length=12) == password
