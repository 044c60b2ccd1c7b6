"""Grading students' configure.yaml end to end, sandboxed.

One module per part, found by its name:
  submission.py  what a submission is: a file, a folder, an archive, a class folder
  repos.py       submissions from git repositories: a roster, the deadline, the commit graded
  git.py         git run on students' repositories: bare, no prompt, no hook, a deadline
  collect.py     `grade collect`: a bare copy of each repository, and when it was made
  leaks.py       credentials anywhere in a repository's history, and masking them
  courserules.py the course's submission rules as checks: other files changed, credentials
  rubric.py      the points of each check (default_rubric.yaml), what a complete run is, the late policy
  static.py      stage 1: yamllint, syntax-check (sandboxed), the playbook rules
  run.py         stage 2: a fresh VM, the playbook from a sandboxed controller
  staging.py     each submission's own app and random MNIST images, served for its VM
  verify.py      stage 3: the evidence of each step and the fetched output.txt
  outside.py     the VM's files, Docker storage and processes read from the grading machine
  reference.py   the grader's own short run of the DCGAN, to check the printed losses
  pipeline.py    the order of the stages; grading one submission and a class
  reuse.py       an earlier result reused when nothing that decides it changed
  adjust.py      the late penalty and the teaching staff's overrides
  finish.py      what every result goes through after its stages, fresh or reused
  results.py     the result model with its fixed outcome names
  formats.py     results.json (Gradescope), grades.csv, junit.xml, the class table
  similarity.py  near-identical playbooks: similarity.csv
  report_html.py index.html: the class on one page that opens offline
  command.py     `dcgan-harness grade`, `grade collect` and `grade merge`
"""
