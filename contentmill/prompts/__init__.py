"""Versioned prompt templates (packaged YAML files plus your folders) and a linter for token waste."""

from contentmill.prompts.library import TemplateLibrary, parse_spec, template_files
from contentmill.prompts.lint import Finding, lint_file, lint_template
from contentmill.prompts.template import PromptTemplate, Variable

__all__ = ["Finding", "PromptTemplate", "TemplateLibrary", "Variable", "lint_file", "lint_template", "parse_spec",
           "template_files"]
