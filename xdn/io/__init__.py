"""Radiograph files <-> arrays: PNG/JPEG (`images`), DICOM and the readers
every command shares (`radiographs`), derived DICOM (`dicom_derived`) and
the one atomic writer (`atomic`)."""
