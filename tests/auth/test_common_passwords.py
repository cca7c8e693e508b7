"""The bundled list of common passwords: present in the package, loaded once, lower-cased."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from auth_svc.common_passwords import PACKAGED_LIST, load_common_passwords
from auth_svc.service import AuthService
from authgate_common.errors import InvalidArgument
from tests.auth.conftest import ServiceFactory


@pytest.fixture(scope="module")
def common() -> frozenset[str]:
    return load_common_passwords()


def test_the_list_ships_as_package_data() -> None:
    assert resources.files("auth_svc").joinpath(PACKAGED_LIST).is_file()


def test_the_list_has_tens_of_thousands_of_lower_case_entries(common: frozenset[str]) -> None:
    assert len(common) > 40_000
    assert all(entry == entry.lower() for entry in common)
    assert {"123456", "password", "qwerty", "iloveyou", "qwerty123456"} <= common


def test_a_list_file_is_read_lower_cased_without_blank_lines(tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("Hunter2Hunter2\n\nletmein\n", encoding="utf-8")

    assert load_common_passwords(listing) == frozenset({"hunter2hunter2", "letmein"})


@pytest.mark.parametrize("password", ["qwerty123456", "1QAZ2WSX3EDC", "123456789987654321"])
def test_registration_refuses_a_listed_password_and_writes_nothing(
    service_factory: ServiceFactory, password: str
) -> None:
    service: AuthService = service_factory()

    with pytest.raises(InvalidArgument, match="password is too common"):
        service.register("alice", password)

    service.register("alice", "a phrase nobody else uses")  # the name was not taken


@pytest.mark.parametrize(
    "password",
    [
        "password1234 ",
        " password1234",
        "\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44\uff11\uff12\uff13\uff14",
    ],
)
def test_registration_refuses_padded_and_full_width_forms_of_a_listed_password(
    service_factory: ServiceFactory, password: str
) -> None:
    service: AuthService = service_factory()
    with pytest.raises(InvalidArgument, match="password is too common"):
        service.register("alice", "password1234")

    with pytest.raises(InvalidArgument, match="password is too common"):
        service.register("alice", password)

    service.register("alice", "a phrase nobody else uses")  # nothing was written


def test_a_list_file_is_read_in_the_comparison_form(tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(" Pass Word1234 \n\uff51\uff57\uff45\uff52\uff54\uff59\n", encoding="utf-8")

    assert load_common_passwords(listing) == frozenset({"password1234", "qwerty"})
