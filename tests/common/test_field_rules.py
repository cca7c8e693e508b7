"""Field rules read from the proto option, and the one set of free-text rules."""

from __future__ import annotations

import re
import sys
import unicodedata
from typing import Any

import pytest
from authgate.auth.v1 import auth_pb2
from authgate.options.v1 import options_pb2
from authgate.profile.v1 import profile_pb2
from google.protobuf import descriptor_pb2, descriptor_pool

from authgate_common import text
from authgate_common.errors import InvalidArgument
from authgate_common.field_rules import FieldRules, FieldRulesError, rules_for, rules_of
from profile_svc.models import BIO_MAX, DISPLAY_NAME_MAX, EMAIL_MAX

SPOOFED_NAME = "\u202eecilA\u200b\u2028admin"
SINGLE_LINE = FieldRules(name="note", max_length=16, text_kind=options_pb2.TEXT_KIND_SINGLE_LINE)
MULTI_LINE = FieldRules(name="note", max_length=20, text_kind=options_pb2.TEXT_KIND_MULTI_LINE)


def test_the_rules_are_read_from_the_proto_option() -> None:
    username = rules_for(auth_pb2.RegisterRequest, "username")
    assert (username.min_length, username.max_length) == (3, 64)
    assert username.pattern == "^[A-Za-z0-9._-]+$"
    bio = rules_for(profile_pb2.UpdateProfileRequest, "bio")
    assert (bio.max_length, bio.text_kind) == (1000, options_pb2.TEXT_KIND_MULTI_LINE)


def test_a_field_without_the_option_accepts_anything() -> None:
    rules = rules_for(auth_pb2.LoginRequest, "username")
    assert rules.json_schema() == {}
    assert rules.check("\x00 anything") == "\x00 anything"


def test_the_declared_limits_fit_the_profile_columns() -> None:
    limits = {
        name: rules_for(profile_pb2.UpdateProfileRequest, name).max_length
        for name in ("display_name", "email", "bio")
    }
    assert limits == {"display_name": DISPLAY_NAME_MAX, "email": EMAIL_MAX, "bio": BIO_MAX}


@pytest.mark.parametrize(
    "value", [SPOOFED_NAME, "a\u200bb", "a\u2028b", "a\u2029b", "a\x00", "a\x7f", "a\x85", "a\n"]
)
def test_single_line_text_refuses_control_format_and_separator_characters(value: str) -> None:
    with pytest.raises(InvalidArgument, match=r"^note must be free of control"):
        SINGLE_LINE.check(value)


def test_multi_line_text_takes_newline_and_tab_but_not_carriage_return() -> None:
    assert MULTI_LINE.check("one\ntwo\tthree") == "one\ntwo\tthree"
    with pytest.raises(InvalidArgument, match="other than newline and tab"):
        MULTI_LINE.check("one\r\ntwo")


def test_free_text_is_nfc_normalised_and_lengths_count_characters() -> None:
    assert SINGLE_LINE.check("Zoe\u0308") == "Zo\u00eb"
    assert SINGLE_LINE.check("日本語です") == "日本語です"
    with pytest.raises(InvalidArgument, match="at most 16 characters long"):
        SINGLE_LINE.check("x" * 17)


def test_text_that_nfc_makes_longer_than_the_limit_is_refused() -> None:
    # U+0958 is a composition exclusion: NFC writes it as two characters.
    assert len(text.normalize("\u0958")) == 2
    with pytest.raises(InvalidArgument, match="at most 16 characters long"):
        SINGLE_LINE.check("\u0958" * 9)


def test_a_declared_description_words_every_refusal() -> None:
    rules = rules_for(auth_pb2.RegisterRequest, "username")
    for value in ("ab", "x" * 65, "no spaces", "abc\n"):
        with pytest.raises(InvalidArgument) as raised:
            rules.check(value)
        assert raised.value.message == (
            "username must be 3 to 64 characters of letters, digits, '.', '_' or '-'"
        )


def test_the_json_schema_states_the_rules() -> None:
    rules = rules_for(auth_pb2.RegisterRequest, "username")
    assert rules.json_schema() == {
        "minLength": 3,
        "maxLength": 64,
        "pattern": "^[A-Za-z0-9._-]+$",
    }
    assert SINGLE_LINE.json_schema() == {
        "maxLength": 16,
        "pattern": text.allowed_pattern(multi_line=False),
    }


@pytest.mark.parametrize("multi_line", [False, True])
def test_the_published_pattern_accepts_exactly_the_characters_the_services_accept(
    multi_line: bool,
) -> None:
    pattern = re.compile(text.allowed_pattern(multi_line=multi_line))
    for code in range(sys.maxunicode + 1):
        char = chr(code)
        if unicodedata.category(char) == "Cs":
            continue  # not text: no UTF-8 request can carry one
        accepted = pattern.fullmatch(char) is not None
        assert accepted is not text.is_refused(char, multi_line=multi_line), hex(code)


def _field_with_rules(name: str, kind: int, **rules: Any) -> Any:
    file = descriptor_pb2.FileDescriptorProto(
        name=f"authgate/rulestest/{name}.proto",
        package=f"authgate.rulestest.{name}",
        syntax="proto3",
        dependency=["authgate/options/v1/options.proto"],
    )
    field = file.message_type.add(name="Message").field.add(
        name="value", number=1, type=kind, label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    )
    # The generated stubs type custom options loosely; set them untyped.
    extensions: Any = field.options.Extensions
    extensions[options_pb2.field_rules].CopyFrom(options_pb2.FieldRules(**rules))
    pool = descriptor_pool.Default()
    pool.Add(file)
    return pool.FindMessageTypeByName(f"{file.package}.Message").fields_by_name["value"]


@pytest.mark.parametrize(
    ("name", "kind", "rules", "message"),
    [
        ("on_int", descriptor_pb2.FieldDescriptorProto.TYPE_INT32, {"max_length": 3}, "string"),
        (
            "both",
            descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
            {"pattern": "^a$", "text": options_pb2.TEXT_KIND_SINGLE_LINE},
            "not both",
        ),
        (
            "bounds",
            descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
            {"min_length": 5, "max_length": 3},
            "above max_length",
        ),
        (
            "bad_pattern",
            descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
            {"pattern": "(unclosed"},
            "pattern",
        ),
    ],
)
def test_rules_that_cannot_be_enforced_fail_when_read(
    name: str, kind: int, rules: dict[str, Any], message: str
) -> None:
    with pytest.raises(FieldRulesError, match=message):
        rules_of(_field_with_rules(name, kind, **rules))
