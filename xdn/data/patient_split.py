"""Deterministic splits by patient: no patient's images in two splits."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
import hashlib


def stable_hash(patient_id: str) -> str:
  """md5 hex digest of a patient id: the same on every machine and run.

  (Python's `hash()` of a str is salted per process, so it cannot be used.)
  """
  return hashlib.md5(patient_id.encode('utf-8')).hexdigest()


def assign_patients(
    patient_ids: Iterable[str], fractions: Mapping[str, float]
) -> dict[str, str]:
  """Maps each distinct patient id to a split name.

  Patients are ordered by `stable_hash` and cut into consecutive blocks whose
  sizes are the given fractions of the number of patients (rounded; every
  split but the last gets at least one patient, the last gets the rest).

  Args:
    patient_ids: patient ids, repeats allowed.
    fractions: split name -> fraction of patients, in block order; must sum
      to 1.

  Returns:
    `{patient_id: split_name}`.
  """
  if abs(sum(fractions.values()) - 1.0) > 1e-6:
    raise ValueError(f'split fractions {dict(fractions)} must sum to 1.')
  patients = sorted(set(patient_ids), key=lambda p: (stable_hash(p), p))
  names = list(fractions)
  assignment = {}
  start = 0
  for name in names[:-1]:
    count = max(1, round(fractions[name] * len(patients)))
    for patient in patients[start:start + count]:
      assignment[patient] = name
    start += count
  for patient in patients[start:]:
    assignment[patient] = names[-1]
  return assignment
