"""Grading students' configure.yaml end to end, sandboxed.

One module per part, found by its name:
  submission.py  what a submission is: a file, a folder, an archive, a class folder
  rubric.py      the points of each check (default_rubric.yaml) and what a complete run is
  static.py      stage 1: yamllint, syntax-check (sandboxed), the playbook rules
  run.py         stage 2: a fresh VM, the playbook from a sandboxed controller
  staging.py     each submission's own app and random MNIST images, served for its VM
  verify.py      stage 3: the evidence of each step and the fetched output.txt
  outside.py     the VM's files, Docker storage and processes read from the grading machine
  reference.py   the grader's own short run of the DCGAN, to check the printed losses
  pipeline.py    the order of the stages; grading one submission and a class
  results.py     the result model with its fixed outcome names
  formats.py     results.json (Gradescope), grades.csv, junit.xml, the class table
  command.py     `dcgan-harness grade` and `grade merge`
"""
