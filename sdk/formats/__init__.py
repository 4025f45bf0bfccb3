"""sadh's files on disk, one module per kind, all checked by the one validator of `records`: `model` (the metadata of
exported models), `engine` (a TensorRT engine's name and sidecar), `index_file` (`.sidx`), `index_sidecar`
(`.sidx.json`), `retriever_folder` (`Retriever.save`'s manifest). docs/formats.md describes them."""
